"""User hook resolution: the context-by-arity rule, decided once per hook at load (spec core §7.2).

The result of binding is a plain callable taking (*args, context); no `inspect` on the request path.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from .errors import StartupError

# hook name -> number of positional arguments before the optional context
HOOK_ARITY = {
    "pre_model_fn": 1,
    "model_fn": 1,
    "model_warmup_fn": 2,
    "input_fn": 2,
    "predict_fn": 2,
    "output_fn": 2,
    "transform_fn": 4,
}
HOOK_ARGS = {
    "pre_model_fn": "model_dir",
    "model_fn": "model_dir",
    "model_warmup_fn": "model_dir, model",
    "input_fn": "body, content_type",
    "predict_fn": "data, model",
    "output_fn": "prediction, accept",
    "transform_fn": "model, body, content_type, accept",
}

# Context rules: AWS INF >= 1.7 passes the context whenever there is one more parameter; the MXNet
# images never passed one, so that family only passes it to a parameter without a default (mxnet.md §7).
CONTEXT_BY_ARITY = "arity"
CONTEXT_NO_DEFAULT = "arity-without-default"

Hook = Callable[..., Any]  # called as hook(*args, context)


def _where(fn: Callable) -> str:
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return repr(fn)
    return f"{code.co_filename}:{code.co_firstlineno}"


def _signature_error(name: str, fn: Callable, sig: inspect.Signature | str, why: str) -> StartupError:
    n = HOOK_ARITY[name]
    args = HOOK_ARGS[name]
    return StartupError(
        f"{_where(fn)}: hook {name}{sig} cannot be called by smserve ({why}); accepted signatures: "
        f"{name}({args}) or {name}({args}, context) (exactly {n} or {n + 1} positional parameters)")


def bind(name: str, fn: Callable, rule: str = CONTEXT_BY_ARITY, model_keyword: bool = False) -> Hook:
    """Return hook(*args, context) that calls `fn` with or without the context, as its signature asks.

    model_keyword (a family declaration, `Family.model_keyword_hooks`): a parameter literally named
    `model` after the hook's n positional ones is not counted; it receives the loaded model as a keyword
    argument. The returned hook then has the call shape hook(*args, context, model=...) and the attribute
    `wants_model`; ScriptHandler closes over the model once it is loaded (MXNet Module input_fn contract,
    mxnet.md §4.1)."""
    if not callable(fn):
        raise StartupError(f"{name} in the user module is a {type(fn).__name__}, not a function")
    n = HOOK_ARITY[name]
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return without_context(fn, n)  # builtins without a signature: the toolkit contract, n arguments
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    model_param = None
    model_index = len(positional)
    if model_keyword:
        model_param = next((p for i, p in enumerate(positional) if p.name == "model" and i >= n
                            and p.kind is p.POSITIONAL_OR_KEYWORD), None)
        if model_param is None:
            model_param = next((p for p in sig.parameters.values()
                                if p.name == "model" and p.kind is p.KEYWORD_ONLY), None)
        else:
            model_index = positional.index(model_param)
        positional = [p for p in positional if p is not model_param]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    kwonly_required = [p.name for p in sig.parameters.values()
                       if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p is not model_param]
    if kwonly_required:
        raise _signature_error(name, fn, sig, f"keyword-only parameter without default: {', '.join(kwonly_required)}")
    count = len(positional)
    required = sum(1 for p in positional if p.default is p.empty)

    if count == n + 1:
        takes_context = rule == CONTEXT_BY_ARITY or positional[-1].default is positional[-1].empty
    elif count == n or (has_varargs and count < n):
        takes_context = False
    else:
        raise _signature_error(name, fn, sig, f"{count} positional parameters")
    if required > n + (1 if takes_context else 0):
        raise _signature_error(name, fn, sig, f"{required} required parameters")

    if model_param is not None:
        after = [p.name for p in positional[model_index:]]  # passed by name: `model` sits before them
        return _with_model(fn, n, takes_context, model_index, after)
    if takes_context:
        return fn  # hook(*args, context) is exactly fn's call shape
    return without_context(fn, n)


def _with_model(fn: Callable, n: int, takes_context: bool, index: int, after: list[str]) -> Hook:
    count = n + 1 if takes_context else n

    def hook(*args, model):
        args = args[:count]
        if after:
            return fn(*args[:index], model=model, **dict(zip(after, args[index:])))
        return fn(*args, model=model)
    hook.wants_model = True  # type: ignore[attr-defined]
    return hook


def without_context(fn: Callable, n: int) -> Hook:
    """Adapt fn(n args) to the hook(*args, context) call shape."""
    if n == 1:
        return lambda a, context: fn(a)
    if n == 2:
        return lambda a, b, context: fn(a, b)
    return lambda *args: fn(*args[:n])


@dataclass(frozen=True)
class UserHooks:
    """The user's hook functions, as found in the module (unbound)."""

    functions: dict[str, Callable]
    source: str

    @classmethod
    def from_module(cls, module: ModuleType | None) -> "UserHooks":
        if module is None:
            return cls({}, "")
        found = {name: getattr(module, name) for name in HOOK_ARITY if getattr(module, name, None) is not None}
        if "transform_fn" in found:
            conflicts = [h for h in ("input_fn", "predict_fn", "output_fn") if h in found]
            if conflicts:
                raise StartupError(f"{getattr(module, '__file__', module.__name__)}: transform_fn cannot be combined "
                                   f"with {', '.join(conflicts)}; keep transform_fn alone or remove it")
        return cls(found, getattr(module, "__file__", module.__name__))

    def names(self) -> list[str]:
        return sorted(self.functions)
