"""The model_fn/input_fn/predict_fn/output_fn (or transform_fn) pipeline shared by the PyTorch, MXNet
and Neo framework-style families (spec core §7). A family only supplies its defaults.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Protocol

from . import codecs
from .batching import Batcher, BatchSettings, NumpyOps
from .context import Context, InferenceRequest, InferenceResult, WorkerInfo, response_headers, sendable_header_value
from .errors import (STAGE_INPUT, STAGE_OUTPUT, STAGE_PREDICT, EncodeError, NotAcceptable, ServingError,
                     classify)
from .executor import current_job_expired
from .hooks import CONTEXT_BY_ARITY, HOOK_ARITY, UserHooks, bind, without_context
from .negotiation import choose, first_concrete


class Defaults(Protocol):
    """A family's default hooks for one worker. Defaults are called with exactly n arguments."""

    supported_accept: tuple[str, ...]

    def model_fn(self, model_dir: str) -> Any: ...
    def prepare_model(self, model: Any, default_predict: bool) -> Any: ...
    def input_fn(self, body: Any, content_type: str | None) -> Any: ...
    def predict_fn(self, data: Any, model: Any) -> Any: ...
    def encode(self, prediction: Any, media_type: str) -> bytes: ...
    def encode_object(self, value: Any) -> bytes | None: ...


class HookFailure(ServingError):
    """A hook raised: carries the mapped status and keeps the original exception for the log."""

    def __init__(self, exc: BaseException, stage: str | None):
        status, error_type, message = classify(exc, stage)
        super().__init__(message, status=status, error_type=error_type)
        self.original = exc
        self.stage = stage


def default_output_fn(defaults: Defaults) -> Callable[[Any, str], tuple[bytes, str]]:
    def output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
        chosen = choose(accept, defaults.supported_accept)
        if chosen is None:
            raise NotAcceptable(f"none of the types in Accept {accept!r} can be produced; supported: "
                                f"{', '.join(defaults.supported_accept)}")
        return defaults.encode(prediction, chosen), chosen
    return output_fn


StageObserver = Callable[[str, float], None]


def _close_over_model(hook: Callable, model: Any) -> Callable:
    return lambda a, b, context: hook(a, b, context, model=model)


class ScriptHandler:
    """Runs one model in one worker: loads it once, then serves requests through the hooks."""

    def __init__(self, defaults: Defaults, user: UserHooks, worker: WorkerInfo, *,
                 context_rule: str = CONTEXT_BY_ARITY, observe: StageObserver | None = None,
                 metrics_sink=None, warn: Callable[[str], None] = lambda msg: None,
                 model_keyword_hooks: tuple[str, ...] = (), batching: BatchSettings | None = None,
                 observe_batch: Callable[[int, int], None] | None = None):
        self.defaults = defaults
        self.batching = batching
        self.batcher: Batcher | None = None
        self.observe_batch = observe_batch
        self.worker = worker
        self.observe = observe or (lambda stage, seconds: None)
        self.metrics_sink = metrics_sink
        self.warn = warn
        fns = user.functions
        self.user_names = user.names()

        def pick(name: str, default: Callable | None) -> Callable | None:
            if name in fns:
                return bind(name, fns[name], context_rule, model_keyword=name in model_keyword_hooks)
            if default is None:
                return None
            return without_context(default, HOOK_ARITY[name])  # defaults never get the context

        self.pre_model_fn = pick("pre_model_fn", None)
        self.model_fn = pick("model_fn", defaults.model_fn)
        self.model_warmup_fn = pick("model_warmup_fn", None)
        self.transform_fn = pick("transform_fn", None)
        self.uses_default_predict = self.transform_fn is None and "predict_fn" not in fns
        self.input_fn = pick("input_fn", defaults.input_fn)
        self.predict_fn = pick("predict_fn", defaults.predict_fn)
        self.user_predict_fn = fns.get("predict_fn")
        self.output_fn = pick("output_fn", default_output_fn(defaults))
        self.user_output = "output_fn" in fns or self.transform_fn is not None
        self.model: Any = None

    # ------------------------------------------------------------ load (once per worker)
    def load(self) -> None:
        model_dir = self.worker.model_dir
        context = self._load_context()
        if self.pre_model_fn:
            self.pre_model_fn(model_dir, context)
        model = self.model_fn(model_dir, context)
        self.model = self.defaults.prepare_model(model, self.uses_default_predict)
        for name in ("input_fn", "output_fn"):  # hooks bound with a `model` keyword (Family.model_keyword_hooks)
            hook = getattr(self, name)
            if getattr(hook, "wants_model", False):
                setattr(self, name, _close_over_model(hook, self.model))
        if self.model_warmup_fn:
            self.model_warmup_fn(model_dir, self.model, context)
        if self.batching is not None and self.batching.max_size > 1:
            self._start_batching(context)

    def _start_batching(self, context: Context) -> None:
        """Only a predict that keeps dimension 0 may see merged inputs: the defaults do, a user predict_fn says so
        with `predict_fn.batch_aware = True` (it then gets the worker's context, not a request's)."""
        family_ops = getattr(self.defaults, "batch_ops", None)  # defaults that keep dimension 0 say so with it
        if self.transform_fn is not None or not ((self.uses_default_predict and family_ops is not None)
                                                 or getattr(self.user_predict_fn, "batch_aware", False)):
            what = ("transform_fn" if self.transform_fn is not None else
                    "the family's default predict_fn" if self.uses_default_predict else "predict_fn")
            self.warn(f"SMSERVE_BATCH_SIZE={self.batching.max_size} has no effect: {what} is not batch-aware. "
                      f"Provide predict_fn and set `predict_fn.batch_aware = True` in your module if it keeps "
                      f"dimension 0 (row i of its output belongs to row i of its input)")
            return
        predict, model = self.predict_fn, self.model
        self.batcher = Batcher(lambda data: predict(data, model, context), self.batching,
                               family_ops or NumpyOps(), self.observe_batch)

    def _load_context(self) -> Context:
        request = InferenceRequest(b"", None, "", [], "model-load", self.worker.model_name)
        return Context(self.worker, request, self.metrics_sink)

    # ------------------------------------------------------------ per request (worker thread)
    def invoke(self, request: InferenceRequest) -> InferenceResult:
        context = Context(self.worker, request, self.metrics_sink)
        observe = self.observe
        stage = STAGE_INPUT
        try:
            body = codecs.body_for_input_fn(request.body, request.content_type)
            if self.transform_fn is not None:
                stage = None
                started = time.perf_counter()
                result = self.transform_fn(self.model, body, request.content_type, request.accept, context)
                observe("transform", time.perf_counter() - started)
            else:
                started = time.perf_counter()
                data = self.input_fn(body, request.content_type, context)
                decoded = time.perf_counter()
                observe("decode", decoded - started)
                stage = STAGE_PREDICT
                if self.batcher is not None:
                    prediction = self.batcher.predict(data, current_job_expired())
                else:
                    prediction = self.predict_fn(data, self.model, context)
                predicted = time.perf_counter()
                observe("predict", predicted - decoded)
                stage = STAGE_OUTPUT
                result = self.output_fn(prediction, request.accept, context)
                observe("encode", time.perf_counter() - predicted)
            stage = STAGE_OUTPUT
            return self._result(result, request.accept, context)
        except HookFailure:
            raise
        except Exception as exc:  # any hook or default failure becomes one mapped error
            raise HookFailure(exc, stage) from exc

    def _result(self, result: Any, accept: str, context: Context) -> InferenceResult:
        content_type = None
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        chunks = None
        if isinstance(result, Iterator) and not isinstance(result, (bytes, str)):
            chunks, body = self._chunks(result), b""  # streamed: the server runs each next() on a predict thread
        else:
            body = self._body(result)
        if context.response_content_type:
            content_type = context.response_content_type
        if content_type is None:
            content_type = first_concrete(accept) or codecs.JSON
        if not sendable_header_value(str(content_type)):
            raise EncodeError(f"the content type {str(content_type)!r} cannot be sent as a header (control "
                              f"characters or characters outside latin-1); return a plain media type")
        status = context.response_status[0] if context.response_status else 200
        headers = response_headers(context, self.warn) if context.response_headers else []
        return InferenceResult(body, str(content_type), status, headers, chunks)

    def _chunks(self, items: Iterator[Any]) -> Iterator[bytes]:
        """A hook's generator as response chunks: each item encoded like a whole answer (bytes, str, JSON);
        a failure inside the generator is the output stage's."""
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except Exception as exc:  # the user's generator failed mid-stream
                raise HookFailure(exc, STAGE_OUTPUT) from exc
            yield self._body(item)

    def _body(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        if value is None:
            return b"null"
        special = self.defaults.encode_object(value)
        if special is not None:
            return special
        return codecs.encode_json(value)
