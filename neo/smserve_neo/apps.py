"""AWS's ready Neo apps, for a model without a script (neo.md §5.1, §5.2): image classification and XGBoost
(Treelite), answering exactly what AWS's handlers answer, with 415 and 400 where AWS fails with 500s.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Callable

import numpy as np

from smserve import codecs
from smserve.context import InferenceRequest, InferenceResult
from smserve.errors import UnsupportedMediaType

from .runtime import ClientError, Runtime

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
CSV_TYPE = "text/csv"
LIBSVM_TYPES = ("text/libsvm", "text/x-libsvm")


class _App:
    def __init__(self, load_runtime: Callable[[], Runtime]):
        self.load_runtime = load_runtime
        self.runtime: Runtime | None = None

    def load(self) -> None:
        self.runtime = self.load_runtime()


class ImageClassificationApp(_App):
    """image-classification-neo: a JPEG/PNG → uint8 [1, C, H, W] → the class scores as a JSON list."""

    def __init__(self, load_runtime: Callable[[], Runtime], shape: tuple[int, int, int, int]):
        super().__init__(load_runtime)
        self.channels, self.size = shape[1], (shape[2], shape[3])  # AWS passes (H, W) where Pillow reads (w, h)

    def invoke(self, request: InferenceRequest) -> InferenceResult:
        bare, _ = codecs.media_type(request.content_type)
        if bare not in IMAGE_TYPES:
            raise UnsupportedMediaType(f"Content-Type {request.content_type or '(missing)'} is not accepted by the "
                                       f"image classification app; accepted: {', '.join(IMAGE_TYPES)}")
        pixels = self._decode(request.body)
        input_name = self.runtime.input_names[0]
        output = self.runtime.run({input_name: pixels})[0]
        return InferenceResult(json.dumps(np.squeeze(output).tolist()).encode(), codecs.JSON)

    def _decode(self, body: bytes) -> np.ndarray:
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(body))
            width, height = image.size
            if width * height * 4 > codecs.decoded_bound(len(body)):  # a small file that decodes to gigabytes
                raise ValueError(f"a {width} x {height} image is too large for a {len(body)}-byte body")
            image = image.convert("RGB" if self.channels == 3 else "L").resize(self.size)
            array = np.asarray(image, dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data
            raise ClientError(f"Loading image data failed with exception:\n{exc}") from None
        array = array[np.newaxis, ...] if array.ndim == 2 else array.transpose(2, 0, 1)
        return array[np.newaxis, ...]


_OTHER_DELIMITERS = frozenset(";\t |:'\"")


def _sniff_delimiter(first_line: str) -> str:
    """csv.Sniffer on the first line, as AWS; a "delimiter" that is part of a number (it picks `1` for the
    single column `1`) means there is none, and `,` is used. A line with commas and no other candidate
    character or quote is what the sniffer always reads as comma-separated: answered without it (0.1 ms)."""
    if "," in first_line and _OTHER_DELIMITERS.isdisjoint(first_line):
        return ","
    try:
        delimiter = csv.Sniffer().sniff(first_line).delimiter
    except csv.Error:
        return ","
    return "," if delimiter.isalnum() or delimiter in "+-." else delimiter


def parse_csv(text: str) -> np.ndarray:
    lines = text.rstrip().split("\n")
    delimiter = _sniff_delimiter(lines[0])
    widths = {line.count(delimiter) + 1 for line in lines}
    if len(widths) != 1:
        raise ClientError(f"CSV rows have different numbers of columns ({', '.join(map(str, sorted(widths)))}); "
                          f"send one row of {max(widths)} values per line")
    try:  # one flat conversion of every cell: the rows are all as wide
        return np.array(delimiter.join(lines).split(delimiter), dtype=np.float32).reshape(len(lines), -1)
    except ValueError as exc:
        raise ClientError(f"CSV data must be numeric ({exc})") from None


def parse_libsvm(text: str) -> np.ndarray:
    """`label index:value ...` lines as a dense matrix, NaN for absent cells (Treelite's missing value)."""
    rows: list[dict[int, float]] = []
    for number, line in enumerate(text.rstrip().split("\n"), 1):
        cells: dict[int, float] = {}
        for token in line.split(" "):
            if ":" not in token:
                continue  # the label (or an empty token)
            index, _, value = token.partition(":")
            try:
                cells[int(index)] = float(value)
            except ValueError:
                raise ClientError(f"LibSVM line {number}: {token!r} is not index:value") from None
            if int(index) < 0:
                raise ClientError(f"LibSVM line {number}: negative index in {token!r}")
        rows.append(cells)
    columns = max((max(cells) for cells in rows if cells), default=-1) + 1
    if columns * len(rows) * 4 > codecs.decoded_bound(len(text)):
        raise ClientError(f"LibSVM index {columns - 1} makes a matrix too large for a {len(text)}-byte body")
    matrix = np.full((len(rows), columns), np.nan, dtype=np.float32)
    for row, cells in enumerate(rows):
        for column, value in cells.items():
            matrix[row, column] = value
    return matrix


def savetxt_row(values: np.ndarray) -> bytes:
    """numpy.savetxt(delimiter=',', fmt='%.18e') of one row, without a file."""
    return (",".join("%.18e" % v for v in values.tolist()) + "\n").encode()


class XGBoostApp(_App):
    """xgboost-neo: CSV or LibSVM rows → Treelite → predictions as CSV (Accept ignored, as AWS)."""

    def invoke(self, request: InferenceRequest) -> InferenceResult:
        bare, _ = codecs.media_type(request.content_type)
        if bare == CSV_TYPE:
            matrix = parse_csv(self._text(request.body))
        elif bare in LIBSVM_TYPES:
            matrix = parse_libsvm(self._text(request.body))
        else:
            raise UnsupportedMediaType(f'Content-Type {request.content_type or "(missing)"} is not accepted by the '
                                       f'xgboost app; accepted: "text/libsvm" and "text/csv"')
        output = np.asarray(self.runtime.run(matrix)[0])
        if output.ndim == 2 and output.shape[1] == 1:
            output = output.reshape(1, -1)
        rows = output if output.ndim == 2 else output.reshape(1, -1)
        return InferenceResult(b"".join(savetxt_row(row) for row in rows), CSV_TYPE)

    @staticmethod
    def _text(body: bytes) -> str:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClientError(f"the body must be UTF-8 text ({exc})") from None
        if not text.strip():
            raise ClientError("the body is empty: send at least one row")
        return text
