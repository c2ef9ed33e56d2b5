"""hooks.bind with model_keyword (Family.model_keyword_hooks; the MXNet Module input_fn contract, mxnet.md §4.1,
§7) and the MXNet context rule, without a framework."""

from __future__ import annotations

import pytest

from smserve.errors import StartupError
from smserve.hooks import CONTEXT_BY_ARITY, CONTEXT_NO_DEFAULT, bind

CTX = object()
MODEL = object()


def test_model_parameter_gets_model_as_keyword():
    def input_fn(data, content_type, model):
        return data, content_type, model

    hook = bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)
    assert hook.wants_model
    assert hook("b", "ct", CTX, model=MODEL) == ("b", "ct", MODEL)


def test_model_parameter_with_default_still_gets_model():
    def input_fn(data, content_type, model=None):
        return model

    hook = bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)
    assert hook("b", "ct", CTX, model=MODEL) is MODEL


def test_model_and_context():
    def input_fn(data, content_type, model, context):
        return model, context

    hook = bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)
    assert hook("b", "ct", CTX, model=MODEL) == (MODEL, CTX)


def test_without_model_keyword_the_parameter_is_the_context():
    def input_fn(data, content_type, model):
        return model

    hook = bind("input_fn", input_fn, CONTEXT_BY_ARITY)
    assert not getattr(hook, "wants_model", False)
    assert hook("b", "ct", CTX) is CTX


def test_defaulted_extra_keeps_default_under_mxnet_rule():
    """mxnet.md §7: an extra parameter with a default is not given the context."""
    def input_fn(data, content_type, extra=7):
        return extra

    assert bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)("b", "ct", CTX) == 7
    assert bind("input_fn", input_fn, CONTEXT_BY_ARITY)("b", "ct", CTX) is CTX


def test_model_named_first_is_not_special():
    """Only a `model` after the hook's positional parameters is the keyword (input_fn(model, body, ct) would
    otherwise receive two values for `model`)."""
    def input_fn(model, body, content_type):
        return model

    hook = bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)
    assert not getattr(hook, "wants_model", False)
    assert hook("b", "ct", CTX) == "b"  # plain arity rule: three parameters, the last one is the context


def test_keyword_only_model():
    def input_fn(data, content_type, *, model):
        return model

    assert bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)("b", "ct", CTX, model=MODEL) is MODEL


def test_too_many_parameters_still_rejected():
    def input_fn(data, content_type, model, a, b):
        return None

    with pytest.raises(StartupError):
        bind("input_fn", input_fn, CONTEXT_NO_DEFAULT, model_keyword=True)
