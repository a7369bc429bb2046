"""The docstring examples of the metrics modules run and give the numbers they show."""

import doctest

import pytest

from avguide.metrics import evaluate, geometry, text


@pytest.mark.parametrize("module", [geometry, text, evaluate])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
