"""Argument checks shared by the ``fastact`` subcommands.

Each subcommand checks its arguments before it starts: a bad value ends the
command at once with argparse's usage message and exit status 2, rather
than with a traceback, a silently replaced value, or after a long run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def add_names_option(parser: argparse.ArgumentParser, option: str, choices, what: str) -> None:
    """``option NAME [NAME ...]``: one or more of ``choices``, space- or comma-separated.

    ``fastact bench --activations sigmoid relu``, ``--activations
    sigmoid,relu`` and ``--activations sigmoid --activations relu`` mean the
    same in every subcommand. An unknown name is a usage error at once;
    :func:`chosen` reads the option's value.
    """
    choices = tuple(choices)

    def parse(text: str) -> list[str]:
        names = [name for name in text.split(",") if name]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            problem = (
                f"unknown {what} {', '.join(map(repr, unknown))}" if unknown else f"no {what} in {text!r}"
            )
            raise argparse.ArgumentTypeError(f"{problem}; choose from {', '.join(choices)}")
        return names

    parser.add_argument(
        option,
        nargs="+",
        action="extend",
        type=parse,
        metavar=what.upper(),
        help=f"one or more {what}s, space- or comma-separated (default all: {' '.join(choices)})",
    )


def chosen(values, choices) -> list[str]:
    """The names given to an :func:`add_names_option` option, in order, once each; all ``choices`` if none."""
    if not values:
        return list(choices)
    return list(dict.fromkeys(name for group in values for name in group))


def output_dir(parser: argparse.ArgumentParser, path) -> Path:
    """``path`` created as a directory (with its parents), or a usage error saying why it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create the output directory {str(path)!r}: {exc.strerror or exc}")
    return path


def read_json(parser: argparse.ArgumentParser, path, option: str, key: str) -> dict:
    """The JSON object in ``path``, which must hold ``key``; a usage error naming ``option`` otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        parser.error(f"{option}: cannot read {str(path)!r}: {exc.strerror or exc}")
    except ValueError as exc:
        parser.error(f"{option}: {str(path)!r} is not JSON ({exc})")
    if not isinstance(data, dict) or key not in data:
        parser.error(f"{option}: {str(path)!r} holds no {key!r}; expected a results.json of fastact bench")
    return data
