"""``fastact train``: how fast an MLP learns with each activation.

The article's claim, measured: training with sigmoid and tanh is slower than
with ReLU, sigmoid slowest. The same MLP (:mod:`fastact.nn`) is trained once
per activation and seed on two offline datasets, scikit-learn's bundled
handwritten digits (8x8 images, 10 classes) and a generated two-arm spiral
(2-D, 2 classes, as in TensorFlow Playground), with the same layers,
optimizer, learning rate, batch order (drawn from the seed) and epochs.
Only the activation and its standard initialisation (He for the ReLU family,
Glorot for sigmoid and tanh) change.

Writes ``DIR/train.json`` (one record per activation, dataset and seed, with
its per-epoch curve), ``DIR/train.md`` (the summary table) and
``DIR/train_DATASET.png`` (loss and test accuracy against epochs and
against training seconds, mean over seeds).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from fastact._cli import add_names_option, chosen, output_dir, positive_int
from fastact.figure import pyplot, save_results, style

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu")
DATASETS = ("digits", "spiral")

# One configuration for every activation; per dataset only the input width,
# the target accuracy and the epochs differ.
HIDDEN = (64, 64, 64, 64)
LEARNING_RATE = 0.02
MOMENTUM = 0.9
BATCH = 32
TARGET = {"digits": 0.95, "spiral": 0.95}
EPOCHS = {"digits": 40, "spiral": 150}
QUICK_EPOCHS = {"digits": 15, "spiral": 60}
SEEDS = 5
QUICK_SEEDS = 3
SPLIT_SEED = 12345  # the train/test split is the same for every run


def spiral(n_per_class: int = 500, noise: float = 0.1, turns: float = 1.5, seed: int = SPLIT_SEED):
    """Two interleaved spiral arms in the plane: (X of shape (2n, 2), labels 0/1)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in (0, 1):
        t = np.sqrt(rng.uniform(0.02, 1.0, n_per_class))  # radius; sqrt spreads points evenly
        angle = 2 * np.pi * turns * t + np.pi * label
        arm = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
        xs.append(arm + noise * t[:, None] * rng.standard_normal((n_per_class, 2)))
        ys.append(np.full(n_per_class, label))
    return np.concatenate(xs), np.concatenate(ys)


def load(dataset: str, dtype=np.float32):
    """(x_train, y_train, x_test, y_test), inputs standardized with the training statistics."""
    if dataset == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise SystemExit(
                "fastact train needs scikit-learn for its bundled digits: pip install scikit-learn"
            ) from exc
        data = load_digits()
        x, y = data.data, data.target
        test_fraction = 0.25
    elif dataset == "spiral":
        x, y = spiral()
        test_fraction = 0.5
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    x = ((x - mean) / std).astype(dtype)
    return x[train], y[train], x[test], y[test]


def _evaluate(model, x, y):
    from fastact.nn import softmax_cross_entropy

    logits, _ = model.forward(x)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, float((logits.argmax(axis=1) == y).mean())


def train_one(activation: str, dataset: str, seed: int, epochs: int, data=None) -> dict:
    """Train one model; return its record (summary and per-epoch curve)."""
    from fastact.nn import MLP, SGD, init_name

    x_train, y_train, x_test, y_test = data if data is not None else load(dataset)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    rng = np.random.default_rng(seed)
    model = MLP([x_train.shape[1], *HIDDEN, n_classes], activation, rng, rrelu_seed=seed)
    opt = SGD(model.params, LEARNING_RATE, MOMENTUM)
    # The batch order depends on the seed only: the same for every activation.
    order_rng = np.random.default_rng([seed, 1])
    train_seconds = 0.0
    loss, acc = _evaluate(model, x_test, y_test)
    curve = [{"epoch": 0, "seconds": 0.0, "train_loss": None, "test_loss": loss, "test_accuracy": acc}]
    reached = None
    for epoch in range(1, epochs + 1):
        order = order_rng.permutation(len(y_train))
        start = time.perf_counter()
        total = 0.0
        for b in range(0, len(order), BATCH):
            idx = order[b : b + BATCH]
            batch_loss, grads = model.loss_and_gradients(x_train[idx], y_train[idx], training=True)
            opt.step(model.gradients(grads))
            model.step += 1
            total += batch_loss * len(idx)
        train_seconds += time.perf_counter() - start
        loss, acc = _evaluate(model, x_test, y_test)
        curve.append(
            {
                "epoch": epoch,
                "seconds": train_seconds,
                "train_loss": total / len(order),
                "test_loss": loss,
                "test_accuracy": acc,
            }
        )
        if reached is None and acc >= TARGET[dataset]:
            reached = (epoch, train_seconds)
    return {
        "activation": activation,
        "dataset": dataset,
        "seed": seed,
        "init": init_name(activation),
        "target_accuracy": TARGET[dataset],
        "epochs_to_target": reached[0] if reached else None,
        "seconds_to_target": reached[1] if reached else None,
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "final_test_loss": curve[-1]["test_loss"],
        "epochs": epochs,
        "train_seconds": train_seconds,
        "curve": curve,
    }


def _median_cell(values, fmt: str, run_length) -> str:
    """Median, or "> run_length" when it falls on a run that never reached the target."""
    values = sorted(values)
    mid = len(values) // 2
    v = values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
    return f"> {run_length}" if math.isinf(v) else format(v, fmt)


def summarize(records) -> str:
    """Markdown table: per dataset and activation, over seeds."""
    lines = [
        "| dataset | activation | init | reached target | epochs to target (median) "
        "| seconds to target (median) | final test accuracy (mean ± sd) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for dataset in DATASETS:
        for activation in ACTIVATIONS:
            rs = [r for r in records if r["dataset"] == dataset and r["activation"] == activation]
            if not rs:
                continue
            hit = [r for r in rs if r["epochs_to_target"] is not None]
            # Runs that never reach the target count as beyond every epoch:
            # the median is then ">" the run length.
            epochs = [r["epochs_to_target"] if r in hit else math.inf for r in rs]
            seconds = [r["seconds_to_target"] if r in hit else math.inf for r in rs]

            acc = np.array([r["final_test_accuracy"] for r in rs])
            lines.append(
                f"| {dataset} (≥ {rs[0]['target_accuracy']:.0%}) | {activation} | {rs[0]['init']} "
                f"| {len(hit)}/{len(rs)} | {_median_cell(epochs, '.1f', rs[0]['epochs'])} "
                f"| {_median_cell(seconds, '.2f', format(max(r['train_seconds'] for r in rs), '.1f'))} "
                f"| {acc.mean():.3f} ± {acc.std():.3f} |"
            )
    return "\n".join(lines)


def plot(records, output: Path) -> list[Path]:
    plt = pyplot()

    paths = []
    for dataset in DATASETS:
        rs = [r for r in records if r["dataset"] == dataset]
        if not rs:
            continue
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
        for activation in ACTIVATIONS:
            runs = [r for r in rs if r["activation"] == activation]
            if not runs:
                continue
            epochs = np.array([p["epoch"] for p in runs[0]["curve"]])
            loss = np.mean([[p["test_loss"] for p in r["curve"]] for r in runs], axis=0)
            acc = np.mean([[p["test_accuracy"] for p in r["curve"]] for r in runs], axis=0)
            secs = np.mean([[p["seconds"] for p in r["curve"]] for r in runs], axis=0)
            for col, xs in ((0, epochs), (1, secs)):
                axes[0, col].plot(xs, loss, label=activation, **style(activation, markers=False))
                axes[1, col].plot(xs, acc, label=activation, **style(activation, markers=False))
        target = rs[0]["target_accuracy"]
        for col, xlabel in ((0, "epoch"), (1, "training time (s)")):
            axes[0, col].set(xlabel=xlabel, ylabel="test loss (cross-entropy)", yscale="log")
            axes[1, col].set(xlabel=xlabel, ylabel="test accuracy")
            axes[1, col].axhline(target, color="grey", linestyle=":", linewidth=1)
            for ax in axes[:, col]:
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=8)
        n_seeds = len({r["seed"] for r in rs})
        fig.suptitle(
            f"{dataset}: MLP {'-'.join(map(str, HIDDEN))}, SGD lr {LEARNING_RATE} momentum {MOMENTUM}, "
            f"batch {BATCH}; mean of {n_seeds} seeds (dotted: target {target:.0%})"
        )
        path = output / f"train_{dataset}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastact train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=Path("train-results"), help="results folder (default train-results/)"
    )
    parser.add_argument("--quick", action="store_true", help="3 seeds and fewer epochs (under 3 minutes)")
    parser.add_argument(
        "--seeds", type=positive_int, help=f"seeds per run (default {SEEDS}, quick {QUICK_SEEDS})"
    )
    parser.add_argument("--epochs", type=positive_int, help="epochs for every dataset (default: per dataset)")
    add_names_option(parser, "--activations", ACTIVATIONS, "activation")
    add_names_option(parser, "--datasets", DATASETS, "dataset")
    args = parser.parse_args(argv)
    activations = chosen(args.activations, ACTIVATIONS)
    datasets = chosen(args.datasets, DATASETS)
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else SEEDS)
    output_dir(parser, args.output)

    records = []
    for dataset in datasets:
        data = load(dataset)
        epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else EPOCHS)[dataset]
        print(f"{dataset}: {len(data[1])} training and {len(data[3])} test examples, {epochs} epochs")
        for activation in activations:
            for seed in range(seeds):
                r = train_one(activation, dataset, seed, epochs, data)
                records.append(r)
                reached = "never" if r["epochs_to_target"] is None else f"epoch {r['epochs_to_target']}"
                print(
                    f"  {activation:<10} seed {seed}: target {reached}, "
                    f"final test accuracy {r['final_test_accuracy']:.3f} ({r['train_seconds']:.1f} s)",
                    flush=True,
                )
    print()
    save_results(args.output, "train", records, summarize(records), plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
