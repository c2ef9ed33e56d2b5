"""TF Serving's number text for float, half and double tensor values (spec §9.4).

TF Serving writes floats with WriteDecimal: absl::StrCat's six significant digits (%g) unless that text does not
read back to the same value, then max_digits10 digits; '.0' is appended to text with neither '.' nor 'e'.
Python would print other digits (float32 0.1 as 0.10000000149011612, 9000000.0 where TF Serving writes 9e+06),
and clients compare response bodies and error texts with the real server's, so this module reproduces TF Serving's
digits, with a vectorised path for large tensors.
"""

from __future__ import annotations

import math
import struct

import numpy as np


def format_decimal(value: float, double: bool = False) -> str:
    """TF Serving's WriteDecimal text for one float (float32 semantics unless `double`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if not double:
        with np.errstate(over="ignore"):
            value = float(np.float32(value))
        if math.isinf(value):
            return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    read_back = float(text) if double else float(np.float32(float(text)))
    if read_back != value:
        text = ("%.17g" if double else "%.9g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _bulk_format(pattern: str, values: list[float]) -> list[str]:
    """`pattern % v` for many values in one C-level formatting call."""
    tokens = ((pattern + "\n") * len(values) % tuple(values)).split("\n")
    tokens.pop()
    return tokens


def _six_digits_read_back(wide: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """For float32 values (held as float64): does the 6-significant-digit text read back as the same float32?

    Rounding numerically instead of printing and re-parsing is exact here: a 6-digit decimal is never within
    double rounding error of a float32 rounding boundary.
    """
    magnitude = np.where(finite & (wide != 0), np.abs(wide), 1.0)
    exponent = np.floor(np.log10(magnitude))
    exponent += magnitude >= 10.0 ** (exponent + 1)
    exponent -= magnitude < 10.0 ** exponent
    shift = 5 - exponent
    power = 10.0 ** np.abs(shift)
    up = shift >= 0
    rounded = np.where(up, np.round(magnitude * power) / power, np.round(magnitude / power) * power)
    return finite & (rounded.astype(np.float32) == magnitude.astype(np.float32))


_FLOAT32 = struct.Struct("f")
_SMALL_ARRAY = 32  # below this, numpy's per-call overhead costs more than formatting value by value


def _few_decimal_tokens(values: list[float], double: bool) -> list[str]:
    """format_decimal for a short list of values (float32 values given as exact doubles)."""
    pack, unpack = _FLOAT32.pack, _FLOAT32.unpack
    tokens = []
    for value in values:
        if value != value:
            tokens.append("NaN")
            continue
        if value in (math.inf, -math.inf):
            tokens.append("Infinity" if value > 0 else "-Infinity")
            continue
        text = "%g" % value
        read_back = float(text) if double else unpack(pack(float(text)))[0]
        if read_back != value:
            text = ("%.17g" if double else "%.9g") % value
        if "." not in text and "e" not in text:
            text += ".0"
        tokens.append(text)
    return tokens


def decimal_tokens(flat: np.ndarray) -> list[str]:
    """format_decimal for a whole array, with bulk C formatting; half prints like float (spec §9.4)."""
    double = flat.dtype == np.float64
    count = flat.size
    if count == 0:
        return []
    if count <= _SMALL_ARRAY:
        values = flat.tolist() if double or flat.dtype == np.float32 else flat.astype(np.float32).tolist()
        return _few_decimal_tokens(values, double)
    tokens = np.empty(count, dtype=object)
    with np.errstate(all="ignore"):
        wide = flat if double else flat.astype(np.float64)
        finite = np.isfinite(wide)
        if double:
            tokens[:] = _bulk_format("%g", wide.tolist())
            read_back = np.array(tokens.tolist(), dtype=np.float64)
            long_form = np.flatnonzero(finite & (read_back != wide))
        else:
            short = _six_digits_read_back(wide, finite)
            short_form = np.flatnonzero(short)
            if short_form.size:
                tokens[short_form] = _bulk_format("%g", wide[short_form].tolist())
            long_form = np.flatnonzero(finite & ~short)
        if long_form.size:
            tokens[long_form] = _bulk_format("%.17g" if double else "%.9g", wide[long_form].tolist())
        whole = np.flatnonzero(finite & (wide == np.floor(wide)))
    for i in whole.tolist():
        text = tokens[i]
        if "." not in text and "e" not in text:
            tokens[i] = text + ".0"
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            value = wide[i]
            tokens[i] = "NaN" if value != value else ("-Infinity" if value < 0 else "Infinity")
    return tokens.tolist()
