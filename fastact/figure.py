"""``fastact plot``: the activations and their derivatives, drawn with fastact's kernels.

Writes ``DIR/activations.{png,svg}``, the article's figure (ReLU, sigmoid and
its derivative, tanh and its derivative on [-5, 5]), and
``DIR/activations_grid.{png,svg}``, every registered activation with its
derivative, one panel each. Every curve is computed by the ``fused`` kernel,
value and derivative in one call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Parameters drawn for the activations that take them.
PRELU_WEIGHT = 0.25
LEAKY_SLOPE_SHOWN = 0.1  # larger than the default 0.01, so that the slope is visible
FORMATS = ("png", "svg")

# One look per activation in the experiments' plots. The ReLU family's
# curves often lie on top of each other (their gradients and training curves
# differ by a few percent), so each has a line style and marker of its own
# as well as a colour: one drawn over another still shows.
STYLES = {
    "sigmoid": {"color": "tab:blue", "linestyle": "-", "marker": "o"},
    "tanh": {"color": "tab:orange", "linestyle": "-", "marker": "D"},
    "relu": {"color": "tab:green", "linestyle": "-", "marker": "s"},
    "leaky_relu": {"color": "tab:red", "linestyle": "--", "marker": "^"},
    "prelu": {"color": "tab:purple", "linestyle": "-.", "marker": "v"},
    "rrelu": {"color": "tab:brown", "linestyle": ":", "marker": "x"},
}


def style(activation: str, markers: bool = True) -> dict:
    """Keyword arguments of ``Axes.plot`` for ``activation``'s curve (markers optional)."""
    look = dict(STYLES.get(activation, {}))
    if not markers:
        look.pop("marker", None)
    return look


def curves(name: str, x: np.ndarray):
    """(label, f(x), f'(x)) for the figure, from the fused kernel."""
    import fastact as fa

    if name == "prelu":
        y, d = fa.prelu.fused(x, np.array([PRELU_WEIGHT]))
        return f"prelu (weight {PRELU_WEIGHT})", y, d
    if name == "leaky_relu":
        y, d = fa.leaky_relu.fused(x, negative_slope=LEAKY_SLOPE_SHOWN)
        return f"leaky_relu (slope {LEAKY_SLOPE_SHOWN})", y, d
    if name == "rrelu":
        y, d = fa.rrelu.fused(x)
        return "rrelu (evaluation: mean slope)", y, d
    y, d = fa.ACTIVATIONS[name].fused(x)
    return name, y, d


def pyplot():
    """matplotlib's pyplot on the Agg backend: files only, no screen needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, output: Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``output/stem.png`` and ``.svg``; return the paths."""
    paths = []
    for fmt in FORMATS:
        path = output / f"{stem}.{fmt}"
        fig.savefig(path, dpi=120)
        paths.append(path)
    return paths


def draw(output: Path, points: int = 1001) -> list[Path]:
    plt = pyplot()

    import fastact as fa

    output.mkdir(parents=True, exist_ok=True)
    x = np.linspace(-5.0, 5.0, points)
    paths = []

    # The article's figure.
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    y, _ = fa.relu.fused(x)
    ax.plot(x, y, color=STYLES["relu"]["color"], label="ReLU")
    for name in ("sigmoid", "tanh"):
        color = STYLES[name]["color"]
        y, d = fa.ACTIVATIONS[name].fused(x)
        ax.plot(x, y, color=color, label=name)
        ax.plot(x, d, color=color, linestyle="--", label=f"{name}' (max {d.max():.2f})")
    ax.set(xlabel="x", ylabel="f(x), f'(x)", xlim=(-5, 5), ylim=(-1.1, 2.5))
    ax.set_title("Activation functions and their derivatives")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    paths += save_figure(fig, output, "activations")
    plt.close(fig)

    # Every registered activation.
    names = list(fa.ACTIVATIONS)
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), constrained_layout=True)
    for ax, name in zip(axes.flat, names, strict=False):
        label, y, d = curves(name, x)
        ax.plot(x, y, label="f(x)")
        ax.plot(x, d, linestyle="--", label="f'(x)")
        if name == "rrelu":
            lo, hi = fa.rrelu.params["lower"], fa.rrelu.params["upper"]
            neg = x < 0
            ax.fill_between(x[neg], hi * x[neg], lo * x[neg], alpha=0.2, label="training: slope range")
        ax.set_title(label)
        ax.set(xlabel="x", ylabel="f(x), f'(x)")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    paths += save_figure(fig, output, "activations_grid")
    plt.close(fig)
    return paths


def save_results(output: Path, stem: str, records, table: str, plot) -> None:
    """Write ``stem.json`` and ``stem.md``, print the table, then draw with ``plot(records, output)``."""
    import json

    (output / f"{stem}.json").write_text(json.dumps(records, indent=1) + "\n")
    (output / f"{stem}.md").write_text(table + "\n")
    print(table)
    try:
        paths = plot(records, output)
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
    else:
        print("\nwrote", ", ".join(str(p) for p in [output / f"{stem}.json", *paths]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastact plot", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=Path("figures"), help="folder for the files (default figures/)"
    )
    args = parser.parse_args(argv)
    from fastact._cli import output_dir

    output_dir(parser, args.output)
    try:
        paths = draw(args.output)
    except ImportError as exc:
        print(f"fastact plot needs matplotlib ({exc}): pip install matplotlib", file=sys.stderr)
        return 2
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
