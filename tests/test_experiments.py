"""The article's experiments: MLP gradients, the figure, the vanishing gradient, training speed."""

import json

import numpy as np
import pytest
from reference import reference

import fastact as fa
from fastact import nn

NAMES = tuple(fa.ACTIVATIONS)


def finite_difference_check(model, x, labels, h=1e-6):
    """Largest relative difference between backprop and central differences, over every parameter."""
    _, grads = model.loss_and_gradients(x, labels, training=True)
    worst = 0.0
    for p, g in zip(model.params, model.gradients(grads), strict=True):
        assert g.shape == p.shape
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up, _ = model.loss_and_gradients(x, labels, training=True)
            p[idx] = old - h
            down, _ = model.loss_and_gradients(x, labels, training=True)
            p[idx] = old
            fd = (up - down) / (2 * h)
            worst = max(worst, abs(fd - g[idx]) / max(abs(fd) + abs(g[idx]), 1e-7))
    return worst


@pytest.mark.parametrize("name", NAMES)
def test_mlp_gradients_match_finite_differences(name):
    rng = np.random.default_rng(0)
    model = nn.MLP([5, 7, 6, 3], name, rng, dtype=np.float64, rrelu_seed=3)
    for s in model.slopes:  # distinct PReLU weights, so each one's gradient is checked
        s[:] = rng.uniform(0.1, 0.5, s.size)
    # Inputs away from the kinks: a difference step must not cross x = 0.
    x = rng.standard_normal((8, 5))
    labels = rng.integers(0, 3, 8)
    assert finite_difference_check(model, x, labels) < 1e-5


def test_mlp_hidden_gradients_and_rrelu_training_slopes():
    rng = np.random.default_rng(1)
    model = nn.MLP([4, 6, 6, 2], "rrelu", rng, dtype=np.float64, rrelu_seed=5)
    x = rng.standard_normal((10, 4))
    logits_train, cache = model.forward(x, training=True)
    logits_eval, _ = model.forward(x, training=False)
    assert not np.allclose(logits_train, logits_eval)  # random slopes in training only
    np.testing.assert_array_equal(model.forward(x, training=True)[0], logits_train)  # same step, same slopes
    model.step += 1
    assert not np.array_equal(model.forward(x, training=True)[0], logits_train)  # a new step draws anew
    grads = model.backward(np.ones_like(logits_train), cache)
    assert [g.shape for g in grads["hidden"]] == [(10, 6), (10, 6)]


def test_initialisation_follows_the_activation_family():
    for name in NAMES:
        expected = "he" if name in ("relu", "leaky_relu", "prelu", "rrelu") else "glorot"
        assert nn.init_name(name) == expected
    rng = np.random.default_rng(2)
    he = nn.MLP([400, 300, 10], "relu", rng, dtype=np.float64)
    glorot = nn.MLP([400, 300, 10], "tanh", rng, dtype=np.float64)
    assert he.weights[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert glorot.weights[0].std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    assert np.all(np.abs(glorot.weights[0]) <= np.sqrt(6 / 700))
    prelu = nn.MLP([3, 4, 2], "prelu", rng)
    assert [s.tolist() for s in prelu.slopes] == [[0.25] * 4]


def test_softmax_cross_entropy_against_direct_formula():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 4)) * 30  # large logits: the shift must keep it finite
    labels = rng.integers(0, 4, 6)
    loss, grad = nn.softmax_cross_entropy(logits, labels)
    z = logits.astype(np.longdouble)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert loss == pytest.approx(float(-np.log(p[np.arange(6), labels]).mean()), rel=1e-12)
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(grad, ((p - onehot) / 6).astype(np.float64), rtol=1e-10, atol=1e-15)


def test_mlp_rejects_bad_configuration():
    with pytest.raises(ValueError, match="unknown activation"):
        nn.MLP([2, 3, 2], "swish", np.random.default_rng())
    with pytest.raises(ValueError, match="sizes"):
        nn.MLP([2], "relu", np.random.default_rng())


def test_figure_curves_are_the_activations(tmp_path):
    pytest.importorskip("matplotlib")
    from fastact import figure

    x = np.linspace(-5, 5, 101)
    _, y, d = figure.curves("sigmoid", x)
    ry, rd = reference("sigmoid", x, np.float64)
    np.testing.assert_allclose(y, ry.astype(np.float64), rtol=1e-14)
    np.testing.assert_allclose(d, rd.astype(np.float64), rtol=1e-14)
    assert d.max() == pytest.approx(0.25)
    _, y, d = figure.curves("prelu", x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, figure.PRELU_WEIGHT * x))

    from fastact.__main__ import main

    assert main(["plot", "--output", str(tmp_path)]) == 0
    for stem in ("activations", "activations_grid"):
        png = (tmp_path / f"{stem}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        svg = (tmp_path / f"{stem}.svg").read_text()
        assert "<svg" in svg
    grid = (tmp_path / "activations_grid.svg").read_text()
    for name in NAMES:
        assert name in grid  # every registered activation has a panel


def test_vanishing_gradient_measurement(tmp_path):
    pytest.importorskip("matplotlib")
    from fastact import vanishing

    depth = 8
    records = vanishing.run(depth, 16, 2)
    assert [r["activation"] for r in records] == list(vanishing.ACTIVATIONS)
    by_name = {r["activation"]: r for r in records}
    for r in records:
        assert len(r["grad_norm"]) == depth and all(np.isfinite(r["grad_norm"]))
        assert all(g > 0 for g in r["grad_norm"])
        assert all(0 < d <= r["derivative_max"] for d in r["mean_derivative"])
    # The per-layer derivative bound holds exactly, layer by layer: backprop
    # through a sigmoid layer multiplies by f' <= 0.25 and by W^T.
    model = nn.MLP([16] * (depth + 1) + [10], "sigmoid", np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((32, 16))
    logits, cache = model.forward(x)
    _, g = nn.softmax_cross_entropy(logits, np.zeros(32, int))
    hidden = model.backward(g, cache)["hidden"]
    for k in range(depth - 1):
        spectral = np.linalg.norm(model.weights[k + 1], 2)
        assert np.linalg.norm(hidden[k]) <= 0.25 * spectral * np.linalg.norm(hidden[k + 1]) * (1 + 1e-12)
    sig = by_name["sigmoid"]["grad_norm"]
    assert sig[0] < sig[-1]

    assert vanishing.main(["--depth", "4", "--width", "8", "--seeds", "2", "--output", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "vanishing.json").read_text())
    assert {r["activation"] for r in saved} == set(vanishing.ACTIVATIONS)
    table = (tmp_path / "vanishing.md").read_text()
    assert all(f"| {name} |" in table for name in vanishing.ACTIVATIONS)
    assert (tmp_path / "vanishing.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (tmp_path / "vanishing.svg").read_text()


def test_spiral_and_digits_datasets():
    from fastact import train

    x, y = train.spiral(100)
    assert x.shape == (200, 2) and np.bincount(y).tolist() == [100, 100]
    x_train, y_train, x_test, y_test = train.load("spiral")
    assert len(y_train) == len(y_test) == 500
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-6)
    again = train.load("spiral")
    np.testing.assert_array_equal(again[0], x_train)  # the split is fixed
    pytest.importorskip("sklearn")
    x_train, y_train, x_test, y_test = train.load("digits")
    assert x_train.shape[1] == 64 and len(y_train) + len(y_test) == 1797
    assert set(np.unique(y_train)) == set(range(10))


def test_train_command_writes_records_and_curves(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from fastact import train

    args = ["--epochs", "2", "--seeds", "3", "--output", str(tmp_path)]
    assert train.main(args) == 0
    records = json.loads((tmp_path / "train.json").read_text())
    assert len(records) == len(train.ACTIVATIONS) * len(train.DATASETS) * 3
    for r in records:
        for key in ("activation", "dataset", "seed", "epochs_to_target", "seconds_to_target"):
            assert key in r
        assert 0 <= r["final_test_accuracy"] <= 1
        assert (r["epochs_to_target"] is None) == (r["seconds_to_target"] is None)
        accs = [p["test_accuracy"] for p in r["curve"]]
        assert len(accs) == 3 and r["final_test_accuracy"] == accs[-1]
        if r["epochs_to_target"] is not None:
            assert accs[r["epochs_to_target"]] >= r["target_accuracy"]
            assert all(a < r["target_accuracy"] for a in accs[: r["epochs_to_target"]])
        assert r["init"] == nn.init_name(r["activation"])
    assert {r["seed"] for r in records} == {0, 1, 2}
    table = (tmp_path / "train.md").read_text()
    assert all(f"| {name} |" in table for name in train.ACTIVATIONS)
    for dataset in train.DATASETS:
        assert (tmp_path / f"train_{dataset}.png").read_bytes().startswith(b"\x89PNG")


def test_training_is_reproducible_from_the_seed():
    from fastact import train

    data = train.load("spiral")
    a = train.train_one("rrelu", "spiral", 1, 2, data)
    b = train.train_one("rrelu", "spiral", 1, 2, data)
    assert [p["test_loss"] for p in a["curve"]] == [p["test_loss"] for p in b["curve"]]
