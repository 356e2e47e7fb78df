"""Every float32 kernel is packed SIMD and free of float32 <-> float64 conversions;
sigmoid's and tanh's keep their constants in registers."""

import json

import background
import pytest

pytestmark = [
    pytest.mark.skipif(not background.has_avx2(), reason="the check reads AVX2/AVX-512 assembly"),
    pytest.mark.probe("asm"),
]


@pytest.fixture(scope="module")
def report():
    return [json.loads(line) for line in background.output("asm").splitlines() if line.startswith("{")]


def test_every_kernel_was_inspected(report):
    kernels = {(r["kernel"], r["wide"]) for r in report}
    # 4 elementwise activations x 4 modes, prelu (3 loops x 3 modes + 3 backward),
    # rrelu (2 loops x 4 modes), each parallel and serial; 7 streaming
    # kernels in each of the two layouts; fused sigmoid and tanh in the other
    # vector width.
    assert len(kernels) == 2 * (16 + 12 + 8) + 2 * 7 + 2, sorted(kernels)
    assert all(r["loop_functions"] >= 1 for r in report), [r for r in report if not r["loop_functions"]]


def test_float32_kernels_are_packed_simd(report):
    scalar = [r["kernel"] for r in report if r["packed"] < 4]
    assert not scalar, f"not vectorized: {scalar}"


def test_float32_kernels_do_not_convert_to_float64(report):
    converting = [r["kernel"] for r in report if r["conversions"]]
    assert not converting, f"float32 <-> float64 conversions in: {converting}"


@pytest.mark.parametrize("layout", ["stream", "direct"])
def test_streaming_kernels_store_whole_vectors_non_temporally(report, layout):
    streaming = [r for r in report if r["kernel"].endswith(f"/{layout}")]
    assert len(streaming) == 7
    plain = [r["kernel"] for r in streaming if not r["nontemporal"]]
    assert not plain, f"no packed non-temporal store in: {plain}"
    # Only they stream: the other kernels keep ordinary stores.
    others = [
        r["kernel"] for r in report if r["nontemporal"] and not r["kernel"].endswith(("/stream", "/direct"))
    ]
    assert not others, others


def test_only_the_parallel_blocks_prefetch_their_inputs(report):
    # The probe builds the blocks with the prefetch on (fastact._cpu.STREAM_PREFETCH).
    prefetching = {r["kernel"] for r in report if r["prefetches"]}
    assert prefetching == {r["kernel"] for r in report if r["kernel"].endswith("/parallel/stream")}
    assert len(prefetching) == 7
    assert all(r["prefetch"] == (r["kernel"] in prefetching) for r in report)


def test_smooth_kernels_keep_their_constants_out_of_the_loop(report):
    # Their constants are pinned (fastact._intrinsics: pin, and pin_bits for the
    # integer masks), so no loop re-loads or re-broadcasts one from the constant
    # pool.
    smooth = [r for r in report if r["kernel"].split("/")[0] in ("sigmoid", "tanh")]
    # 16 plain kernels, 5 streaming ones in each layout, 2 in the other width.
    assert len(smooth) == 16 + 2 * 5 + 2
    reloading = [r["kernel"] for r in smooth if r["pool_loads_in_loop"]]
    assert not reloading, f"constant-pool loads inside the vector loop of: {reloading}"


@pytest.mark.skipif(not background.has_avx512(), reason="512-bit vectors need AVX-512")
def test_wide_kernels_use_512_bit_vectors(report):
    wide = [r for r in report if r["wide"]]
    assert {r["kernel"] for r in wide} >= {
        "sigmoid/fused/elementwise/parallel",
        "tanh/fused/elementwise/parallel",
    }
    narrow = [r["kernel"] for r in wide if r["packed_512"] < 4]
    assert not narrow, f"no 512-bit loop in: {narrow}"
