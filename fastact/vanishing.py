"""``fastact vanishing``: the gradient that reaches each layer of a deep MLP.

The article's argument: sigmoid' is at most 0.25, so the gradient flowing
back through k sigmoid layers is multiplied by a product of k derivatives,
each at most 0.25, and shrinks geometrically; tanh' (at most 1) shrinks it
less, and ReLU' is exactly 1 wherever a unit is active.

Measured here at initialisation, for each activation: an MLP of ``--depth``
hidden layers (default 20) of ``--width`` units, with the standard
initialisation for the activation (He for the ReLU family, Glorot for
sigmoid and tanh), a batch of standard-normal inputs with random labels and
a softmax cross-entropy loss; for every hidden layer the norm of the loss
gradient with respect to its weights, and the mean derivative f'(z) of its
units, averaged over ``--seeds`` seeds. Writes ``DIR/vanishing.json``,
``DIR/vanishing.md`` (the table) and ``DIR/vanishing.{png,svg}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fastact._cli import output_dir, positive_int
from fastact.figure import pyplot, save_figure, save_results, style

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu")
# The largest value of each activation's derivative: the article's per-layer bound.
DERIVATIVE_MAX = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "prelu": 1.0, "rrelu": 1.0}


def measure(activation: str, depth: int, width: int, seed: int, batch: int = 256, classes: int = 10):
    """Per hidden layer (input side first): weight-gradient norm and mean f'."""
    import fastact as fa
    from fastact.nn import MLP, softmax_cross_entropy

    rng = np.random.default_rng(seed)
    model = MLP([width] * (depth + 1) + [classes], activation, rng, dtype=np.float64)
    data = np.random.default_rng([seed, 7])
    x = data.standard_normal((batch, width))
    labels = data.integers(0, classes, batch)
    logits, cache = model.forward(x)
    _, g = softmax_cross_entropy(logits, labels)
    grads = model.backward(g, cache)
    norms = [float(np.linalg.norm(gw)) for gw in grads["weights"][:depth]]
    derivs = []
    for k in range(depth):
        saved = cache[k][1]
        d = fa.prelu.derivative(saved, model.slopes[k]) if activation == "prelu" else saved
        derivs.append(float(np.mean(d)))
    return norms, derivs


def run(depth: int, width: int, seeds: int, activations=ACTIVATIONS) -> list[dict]:
    records = []
    for activation in activations:
        norms, derivs = zip(*(measure(activation, depth, width, s) for s in range(seeds)), strict=True)
        norms, derivs = np.array(norms), np.array(derivs)
        from fastact.nn import init_name

        records.append(
            {
                "activation": activation,
                "init": init_name(activation),
                "depth": depth,
                "width": width,
                "seeds": seeds,
                # Geometric mean over seeds: the norms span many decades.
                "grad_norm": np.exp(np.log(norms).mean(axis=0)).tolist(),
                "grad_norm_per_seed": norms.tolist(),
                "mean_derivative": derivs.mean(axis=0).tolist(),
                "derivative_max": DERIVATIVE_MAX[activation],
            }
        )
    return records


def table(records) -> str:
    depth = records[0]["depth"]
    mid = max(1, depth // 2)
    lines = [
        f"| activation | init | max f' (bound per layer) | mean f' (measured) | ‖∂L/∂W‖ layer 1 "
        f"| layer {mid} | layer {depth} | layer 1 / layer {depth} | change per layer |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        g = r["grad_norm"]
        ratio = g[0] / g[-1]
        per_layer = ratio ** (1 / max(1, depth - 1))
        lines.append(
            f"| {r['activation']} | {r['init']} | {r['derivative_max']:g} "
            f"| {np.mean(r['mean_derivative']):.3f} | {g[0]:.2e} | {g[mid - 1]:.2e} | {g[-1]:.2e} "
            f"| {ratio:.2e} | ×{per_layer:.3f} |"
        )
    return "\n".join(lines)


def plot(records, output: Path) -> list[Path]:
    plt = pyplot()

    depth = records[0]["depth"]
    layers = np.arange(1, depth + 1)
    fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    for r in records:
        ax.plot(
            layers,
            r["grad_norm"],
            markersize=4,
            fillstyle="none",
            label=f"{r['activation']} ({r['init']})",
            **style(r["activation"]),
        )
        if r["activation"] == "sigmoid":
            # The derivative bound alone: 0.25 per sigmoid layer between layer l and the last.
            bound = r["grad_norm"][-1] * 0.25 ** (depth - layers)
            ax.plot(
                layers,
                bound,
                color="grey",
                linestyle="--",
                label="0.25 per layer from the last (sigmoid' ≤ 0.25)",
            )
    ax.set(
        xlabel="hidden layer (1 = nearest the input)",
        ylabel="‖∂L/∂W‖ (geometric mean over seeds)",
        yscale="log",
        xticks=layers if depth <= 20 else None,
    )
    ax.set_title(
        f"Gradient reaching each layer at initialisation: {depth} hidden layers of {records[0]['width']}, "
        f"{records[0]['seeds']} seeds",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    paths = save_figure(fig, output, "vanishing")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastact vanishing", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("vanishing-results"),
        help="results folder (default vanishing-results/)",
    )
    parser.add_argument("--depth", type=int, default=20, help="hidden layers (default 20)")
    parser.add_argument("--width", type=positive_int, default=64, help="units per hidden layer (default 64)")
    parser.add_argument("--seeds", type=positive_int, default=5, help="seeds averaged (default 5)")
    args = parser.parse_args(argv)
    if args.depth < 2:
        parser.error("--depth must be at least 2")
    output_dir(parser, args.output)
    records = run(args.depth, args.width, args.seeds)
    save_results(args.output, "vanishing", records, table(records), plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
