"""Turn ``pytest benchmarks --benchmark-only --benchmark-json=FILE`` into a markdown table.

    python benchmarks/table.py FILE

One row per activation: fastact's median time, GB/s and ratios to the two
roofline kernels (ordinary and non-temporal stores), and the speed-up over
NumPy and PyTorch. The roofline ratio is the
one the ``fastact`` case measured in alternating rounds with the roofline
(``x_roofline``); files without it fall back to the group's roofline row,
timed at another moment.
"""

import json
import sys
from collections import defaultdict


def _stream_ratio(paired, t, providers):
    if paired and paired[2] is not None:
        return f"{paired[2]:.2f}"
    if "roofline-stream" in providers:
        return f"{t / providers['roofline-stream'][0]:.2f}"
    return "-"


def table(path):
    with open(path) as fh:
        data = json.load(fh)
    runs, paired = defaultdict(dict), {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        if (info.get("mode", "fused"), info.get("size", 1 << 24), info.get("dtype", "float32")) != (
            "fused",
            1 << 24,
            "float32",
        ):
            continue
        runs[info["activation"]][info["provider"]] = (b["stats"]["median"], info["bytes"])
        if "x_roofline" in info:
            paired[info["activation"]] = (
                info["x_roofline"],
                info["roofline_paired_median"],
                info.get("x_roofline_stream"),
            )
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw", machine.get("processor", "?"))
    lines = [
        f"fused f and f', 2^24 float32 elements, median time; {cpu}, {data.get('datetime', '')[:10]}.",
        "",
        "| activation | fastact ms | GB/s | x roofline | x streaming roofline | 1 thread ms "
        "| torch `out=` pair | torch eager | NumPy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, p in runs.items():
        t, nbytes = p["fastact"]
        row = [
            name,
            f"{t * 1e3:.2f}",
            f"{nbytes / t / 1e9:.1f}",
            f"{paired[name][0]:.2f}" if name in paired else f"{t / p['roofline'][0]:.2f}",
            _stream_ratio(paired.get(name), t, p),
            f"{p['fastact-1thread'][0] * 1e3:.2f}" if "fastact-1thread" in p else "-",
        ]
        for other in ("torch-out", "torch", "numpy"):
            row.append(f"{p[other][0] / t:.1f}x slower" if other in p else "-")
        lines.append("| " + " | ".join(row) + " |")
    roof = [p["roofline"][0] for p in runs.values() if "roofline" in p]
    if roof:
        lines.append("")
        lines.append(
            "Roofline kernel (read x, write two outputs) in the same run: "
            + ", ".join(f"{r * 1e3:.2f}" for r in roof)
            + " ms (measured once per group)."
        )
    if paired:
        lines.append(
            "x roofline: fastact and the rooflines timed in alternating rounds, ratio of the medians;"
            " the streaming roofline writes with non-temporal stores, as fastact does at this size"
            " (the plain roofline's medians in those rounds: "
            + ", ".join(f"{name} {v[1] * 1e3:.2f}" for name, v in paired.items())
            + " ms)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1]))
