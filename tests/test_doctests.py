"""The examples in the docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

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
