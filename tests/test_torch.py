"""Agreement with PyTorch's autograd, and where fastact deliberately differs."""

import importlib.util

import numpy as np
import pytest
from tolerances import ELEMENTWISE, MODES

import fastact as fa
from fastact import baselines

torch = pytest.importorskip("torch")


def torch_pair(name, x, **params):
    t = torch.tensor(x, requires_grad=True)
    fn = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda v: torch.nn.functional.leaky_relu(v, params.get("negative_slope", 0.01)),
    }[name]
    y = fn(t)
    y.backward(torch.ones_like(t))
    return y.detach().numpy(), t.grad.numpy()


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_value_and_gradient_match_torch_autograd(name):
    x = np.concatenate([np.linspace(-12, 12, 2001), [0.0, -0.0, 1e-300, -1e-300]])
    y, d = fa.ACTIVATIONS[name].fused(x)
    ty, td = torch_pair(name, x)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(y, ty, rtol=4 * eps, atol=0)
    # torch forms f' as y(1 - y) or 1 - y^2: absolute error ~eps, relative
    # error unbounded in saturation (see the next test).
    np.testing.assert_allclose(d, td, rtol=4 * eps, atol=4 * eps)


def test_saturation_where_torch_returns_zero():
    x = np.array([20.0, 30.0, 60.0], np.float32)
    _, td = torch_pair("sigmoid", x)
    assert np.all(td[1:] == 0)  # y * (1 - y) cancels
    assert np.all(fa.sigmoid.derivative(x) > 0)
    _, td = torch_pair("tanh", np.array([10.0, 20.0], np.float32))
    assert np.all(td == 0)  # 1 - y * y cancels
    assert np.all(fa.tanh.derivative(np.array([10.0, 20.0], np.float32)) > 0)


@pytest.mark.parametrize("shape, channels", [((4, 3, 3), 3), ((8, 5), 5), ((7,), 1), ((2, 4, 3, 2), 1)])
def test_prelu_matches_torch(shape, channels):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, shape)
    g = rng.standard_normal(shape)
    w = rng.uniform(0.1, 0.4, channels)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.prelu(tx, tw)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(fa.prelu(x, w), ty.detach().numpy(), rtol=1e-15)
    gx, gw = fa.prelu.backward(g, x, w)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-12)


def test_rrelu_eval_matches_torch():
    x = np.linspace(-5, 5, 1001)
    ty = torch.nn.functional.rrelu(torch.tensor(x), lower=0.1, upper=0.3, training=False)
    np.testing.assert_allclose(fa.rrelu(x, lower=0.1, upper=0.3), ty.numpy(), rtol=1e-15)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", baselines.NAMES)
def test_baselines_compute_what_they_claim(name, mode, dtype):
    """The benchmarks' providers (one shared table) against fastact, which the
    other tests check against the references."""
    x = np.linspace(-9, 9, 4099).astype(dtype)
    g = np.cos(x)
    for provider in baselines.PROVIDERS:
        if provider == "jax" and importlib.util.find_spec("jax") is None:
            continue  # optional provider, checked wherever JAX is installed
        run = baselines.prepare(provider, name, mode, x, g)
        baselines.check(provider, name, mode, run(), x, g)
    # The check is not vacuous: a wrong result fails it.
    with pytest.raises(AssertionError):
        baselines.check(
            "numpy",
            name,
            mode,
            baselines.prepare("numpy", "tanh" if name != "tanh" else "sigmoid", mode, x, g)(),
            x,
            g,
        )


def test_cpu_tensors_are_read_as_arrays_and_unreadable_ones_say_why():
    x = np.linspace(-4, 4, 9, dtype=np.float32)
    y, d = fa.tanh.fused(torch.from_numpy(x))
    want_y, want_d = fa.tanh.fused(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(d, want_d)
    t = torch.from_numpy(x.copy())
    assert fa.relu(t, out=t.numpy()) is not None
    np.testing.assert_array_equal(t.numpy(), np.maximum(x, 0))  # written in the tensor's memory
    # NumPy cannot take these; the error carries torch's reason.
    with pytest.raises(TypeError, match=r"^sigmoid.forward: x of type Tensor cannot be .*requires grad"):
        fa.sigmoid(torch.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match=r"^relu.backward: grad_out of type Tensor .*BFloat16"):
        fa.relu.backward(torch.ones(3, dtype=torch.bfloat16), x[:3])


def test_tensors_are_sent_to_a_device_by_their_is_cuda_flag(monkeypatch):
    from fastact._activation import is_device_array

    class ClaimsCuda(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    assert not is_device_array(torch.ones(3))
    assert is_device_array(torch.ones(3).as_subclass(ClaimsCuda))

    # A CPU tensor is settled by the flag: its __cuda_array_interface__,
    # which raises (and costs about a microsecond), is never asked for.
    def refuse(self):
        raise RuntimeError("__cuda_array_interface__ was read")

    monkeypatch.setattr(torch.Tensor, "__cuda_array_interface__", property(refuse))
    x = np.linspace(-3, 3, 7)
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(fa.sigmoid(t), fa.sigmoid(x))
    y, d = fa.tanh.fused(t)
    np.testing.assert_array_equal(d, fa.tanh.derivative(x))
    np.testing.assert_array_equal(fa.relu.backward(t, t), fa.relu.backward(x, x))
    np.testing.assert_array_equal(fa.prelu(t, weight=torch.tensor([0.25])), fa.prelu(x, weight=0.25))
