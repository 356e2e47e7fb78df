"""The examples in the docstrings and the README run and print what they say."""

import contextlib
import doctest
import importlib
import io
import pkgutil
import re
from pathlib import Path

import pytest

import fastact

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(fastact.__path__, "fastact.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_activation_has_a_doctest():
    finder = doctest.DocTestFinder()
    for act in fastact.ACTIVATIONS.values():
        (test,) = finder.find(act.__doc__, act.name, globs={})
        assert test.examples, f"{act.name} has no example"


def _readme_example():
    """The README's "Use" example: (its code, the output printed under it)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    use = text.index("\n## Use\n")
    code = re.search(r"```python\n(.*?)```", text[use:], re.S)
    assert code, "README's Use section lost its example"
    shown = re.search(r"prints\n\n```\n(.*?)```", text[use + code.end() :], re.S)
    assert shown, "README's Use example lost the output printed under it"
    return code.group(1), shown.group(1)


def test_readme_example_prints_what_it_shows():
    code, shown = _readme_example()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue() == shown
