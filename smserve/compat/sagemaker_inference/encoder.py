"""encode(array_like, content_type): a prediction to the response body, byte for byte what the toolkit writes
(JSON and CSV as str, NPY as bytes). An object (pickled) array is refused rather than pickled into NPY."""

import io
import json

import numpy as np

from smserve import codecs as _codecs

from . import content_types, errors


def _tolist(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return json.JSONEncoder().default(value)


def _array_to_json(array_like):
    return json.dumps(array_like, default=_tolist)


def _array_to_csv(array_like):
    stream = io.StringIO()
    np.savetxt(stream, array_like, delimiter=",", fmt="%s")
    return stream.getvalue()


_ENCODERS = {
    content_types.JSON: _array_to_json,
    content_types.CSV: _array_to_csv,
    content_types.NPY: _codecs.encode_npy,
}

SUPPORTED_CONTENT_TYPES = set(_ENCODERS)


def encode(array_like, content_type):
    """Encode `array_like` as `content_type`; UnsupportedFormatError for any other type."""
    encoder = _ENCODERS.get(content_type)
    if encoder is None:
        raise errors.UnsupportedFormatError(content_type)
    return encoder(array_like)
