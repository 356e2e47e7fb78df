"""The exhaustive accuracy command: its error measure, its verdict, and a sampled run."""

import math

import numpy as np
import pytest

from fastact import accuracy

ULP_AT_ONE = 2.0**-23  # float32 spacing in [1, 2)


def test_ulp_error_measures_in_float32_spacing_at_the_exact_value():
    err = accuracy._ulp_error
    assert err(1.0, 1.0) == (0.0, 0)
    assert err(1.0 + 3 * ULP_AT_ONE, 1.0) == (3.0, 0)
    assert err(1.5 - 0.5 * ULP_AT_ONE, 1.5) == (0.5, 0)
    # The unit follows the exact value's binade: 2^-24 below 1.
    assert err(0.75 + 2.0**-24, 0.75) == (1.0, 0)
    tiny = float(np.finfo(np.float32).tiny)
    assert err(tiny * (1 + 2 * ULP_AT_ONE), tiny) == (2.0, 0)
    # An exact result below the normal range is outside the ULP contract.
    assert err(0.0, tiny / 4) == (0.0, 0)
    # Special values must match exactly.
    assert err(math.nan, math.nan) == (0.0, 0)
    assert err(math.nan, 1.0)[1] == 1
    assert err(1.0, math.nan)[1] == 1
    assert err(math.inf, math.inf) == (0.0, 0)
    assert err(-math.inf, math.inf)[1] == 1
    assert err(math.inf, 1.0)[1] == 1
    assert err(3.4e38, math.inf)[1] == 1


def test_verdict_names_each_broken_promise(monkeypatch, capsys):
    ok = accuracy.Result("relu", inputs=10)
    far = accuracy.Result("tanh", inputs=10, max_ulp_value=1.0, max_ulp_derivative=4.5, at_derivative=2.0)
    special = accuracy.Result("sigmoid", inputs=10, special_mismatches=2, examples=[1.0, 3.0])
    assert accuracy.violations([ok]) == []
    assert accuracy.violations([accuracy.Result("tanh", max_ulp_value=4.0)]) == []
    lines = accuracy.violations([ok, far, special])
    assert lines == [
        "tanh: f' is 4.500 ULP off at x = 2, beyond 4 ULP",
        "sigmoid: 2 special-value mismatches, e.g. x = [1.0, 3.0]",
    ]
    results = iter([ok, far])
    monkeypatch.setattr(accuracy, "check", lambda name, step, progress: next(results))
    assert accuracy.main(["relu", "tanh"]) == 1
    assert "tanh: f' is 4.500 ULP off" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu"])
def test_sampled_run_holds_the_contract(name):
    step = 4099  # about a million bit patterns, every sign and exponent
    result = accuracy.check(name, step=step)
    assert result.inputs == len(range(0, 1 << 32, step))
    assert result.special_mismatches == 0, result.examples
    assert 0 <= result.max_ulp_value <= accuracy.CONTRACT_ULP
    assert 0 <= result.max_ulp_derivative <= accuracy.CONTRACT_ULP
    if name == "relu":
        assert result.max_ulp_value == result.max_ulp_derivative == 0
    else:
        # sigmoid and tanh round; their errors show (the README's full
        # table: 1.9-2.4 ULP), so the measure is not blind.
        assert result.max_ulp_value > 0


def test_command_prints_the_table_and_exits_zero(capsys):
    assert accuracy.main(["relu", "--step", "65537"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| activation | inputs | max ULP f |")
    assert "| relu | 65,536 | 0.000 |" in out
