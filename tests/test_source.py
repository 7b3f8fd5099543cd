"""show_source renders the helper's real source, read from its module."""

from __future__ import annotations

import functools

import pytest

from helpers.core.exercises import number_forms
from helpers.ui.source import show_source, source_text


def test_show_source_renders_the_function_as_read_from_its_module():
    shown = show_source(number_forms).data
    assert "`helpers.core.exercises.number_forms`" in shown
    assert "```python\ndef number_forms(value: float)" in shown
    assert "math.isfinite" in shown  # the body, not only the signature


def test_methods_are_dedented_and_wrappers_unwrapped():
    class Holder:
        def method(self):
            return 42

    @functools.wraps(number_forms)
    def wrapper(*args):
        return number_forms(*args)

    assert source_text(Holder.method).startswith("def method(self):")
    assert source_text(wrapper).startswith("def number_forms")


def test_builtins_have_no_source_and_say_so():
    with pytest.raises(TypeError, match="no Python source"):
        source_text(len)
