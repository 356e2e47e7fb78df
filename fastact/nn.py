"""A small multilayer perceptron on fastact's kernels, for the experiments.

Dense layers with one activation between them and a softmax output, written
in NumPy: the forward pass calls the activation's ``fused`` kernel, which
returns f(z) and f'(z) from one pass over z, and the backward pass multiplies
the incoming gradient by that saved f'(z) (PReLU calls ``prelu.backward``,
which also returns the gradient of its learned weights). ``fastact vanishing``
and ``fastact train`` use it; the tests check its gradients against finite
differences.

Initialisation follows the usual rule for each family: He (normal, variance
2 / fan_in) for the ReLU family, Glorot (uniform, variance
2 / (fan_in + fan_out)) for sigmoid and tanh, biases zero, and PReLU's
weights 0.25 as in PyTorch. The output layer uses Glorot for every activation.
"""

from __future__ import annotations

import numpy as np

import fastact as fa

RELU_FAMILY = ("relu", "leaky_relu", "prelu", "rrelu")
PRELU_INIT = 0.25


def init_name(activation: str) -> str:
    """The initialisation used for hidden layers of ``activation``: "he" or "glorot"."""
    return "he" if activation in RELU_FAMILY else "glorot"


def _init(rng, fan_in, fan_out, kind, dtype):
    if kind == "he":
        return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(dtype)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of integer ``labels`` and its gradient with respect to ``logits``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_norm
    n = logits.shape[0]
    loss = -float(log_p[np.arange(n), labels].mean())
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return loss, (grad / n).astype(logits.dtype, copy=False)


class MLP:
    """``sizes[0]`` inputs, hidden layers ``sizes[1:-1]`` with ``activation``, ``sizes[-1]`` logits.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.
    activation : str
        A name in ``fastact.ACTIVATIONS``.
    rng : numpy.random.Generator
        Draws the initial weights.
    dtype : float32 or float64
    rrelu_seed : int
        RReLU's training slopes are drawn from ``(rrelu_seed, step, layer)``,
        so a run is reproducible.
    """

    def __init__(self, sizes, activation: str, rng, dtype=np.float32, rrelu_seed: int = 0):
        if activation not in fa.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {list(fa.ACTIVATIONS)}")
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must hold at least an input and an output width, got {sizes}")
        self.sizes = sizes
        self.activation = activation
        self.act = fa.ACTIVATIONS[activation]
        self.dtype = np.dtype(dtype)
        self.rrelu_seed = int(rrelu_seed)
        self.step = 0
        hidden = init_name(activation)
        self.weights, self.biases, self.slopes = [], [], []
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = k == len(sizes) - 2
            self.weights.append(_init(rng, fan_in, fan_out, "glorot" if last else hidden, self.dtype))
            self.biases.append(np.zeros(fan_out, self.dtype))
            if activation == "prelu" and not last:
                self.slopes.append(np.full(fan_out, PRELU_INIT, self.dtype))

    @property
    def params(self) -> list[np.ndarray]:
        """Every trainable array: weights, biases, then PReLU's slopes."""
        return [*self.weights, *self.biases, *self.slopes]

    def _rrelu_seed(self, layer: int) -> int:
        return (self.rrelu_seed * 1_000_003 + self.step) * 64 + layer

    def forward(self, x: np.ndarray, training: bool = False) -> tuple[np.ndarray, list]:
        """Logits, and what :meth:`backward` needs.

        ``training`` matters for RReLU only: random slopes (reproducible from
        the step and layer) in training, their mean otherwise.
        """
        h = np.asarray(x, self.dtype)
        cache = []
        n_hidden = len(self.weights) - 1
        for k in range(n_hidden):
            z = h @ self.weights[k] + self.biases[k]
            if self.activation == "prelu":
                a = fa.prelu(z, self.slopes[k])
                saved = z
            elif self.activation == "rrelu":
                a, saved = fa.rrelu.fused(z, training=training, seed=self._rrelu_seed(k))
            else:
                a, saved = self.act.fused(z)
            cache.append((h, saved))
            h = a
        cache.append((h, None))
        return h @ self.weights[-1] + self.biases[-1], cache

    def backward(self, grad_logits: np.ndarray, cache) -> dict[str, list[np.ndarray]]:
        """Gradients of the loss whose gradient at the logits is ``grad_logits``.

        Returns ``{"weights": [...], "biases": [...], "slopes": [...],
        "hidden": [...]}``; ``hidden[k]`` is the gradient reaching hidden
        layer k's pre-activation (layer 0 nearest the input).
        """
        n_layers = len(self.weights)
        gw, gb, gs, gz_list = [None] * n_layers, [None] * n_layers, [None] * len(self.slopes), []
        g = np.asarray(grad_logits, self.dtype)
        for k in range(n_layers - 1, -1, -1):
            h, saved = cache[k]
            if k < n_layers - 1:
                if self.activation == "prelu":
                    g, gs[k] = fa.prelu.backward(g, saved, self.slopes[k])
                else:
                    g = g * saved  # f'(z), from the fused forward pass
                gz_list.append(g)
            gw[k] = h.T @ g
            gb[k] = g.sum(axis=0)
            if k:
                g = g @ self.weights[k].T
        return {"weights": gw, "biases": gb, "slopes": gs, "hidden": gz_list[::-1]}

    def gradients(self, grads) -> list[np.ndarray]:
        """The gradient arrays in the order of :attr:`params`."""
        return [*grads["weights"], *grads["biases"], *grads["slopes"]]

    def loss_and_gradients(self, x, labels, training: bool = False):
        logits, cache = self.forward(x, training)
        loss, g = softmax_cross_entropy(logits, labels)
        return loss, self.backward(g, cache)

    def predict(self, x) -> np.ndarray:
        return self.forward(x)[0].argmax(axis=1)


class SGD:
    """Stochastic gradient descent with momentum, updating arrays in place."""

    def __init__(self, params, lr: float, momentum: float = 0.9):
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, grads) -> None:
        for p, v, g in zip(self.params, self.velocity, grads, strict=True):
            v *= self.momentum
            v -= self.lr * g
            p += v
