"""Bodies within the payload limit that would decode to far more (issue 12 findings): each is refused with
413 DecodedTooLarge (or 400 for a lying NPY header) naming the bound, quickly, without the worker allocating it,
and the next request succeeds. The codec checks run in the default input_fn and in sagemaker_inference.decoder
(the probe script decodes with it)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import scipy.sparse

from smserve import codecs
from smserve.errors import BadRequest, DecodedTooLarge

from ..contract.core_scripts import ONE_WORKER, error, probe_dir, still_serves
from ..harness import TARGET

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)


def string_bomb() -> str:
    """60,000 one-letter strings and one of 20,000: 260 KB of JSON, 4.8 GB as a numpy string array."""
    return json.dumps(["a"] * 60_000 + ["b" * 20_000])


def npz_bomb() -> bytes:
    """143 MiB of zeros, deflated to about 140 KB."""
    out = io.BytesIO()
    np.savez_compressed(out, x=np.zeros(143 * 2**20 // 8))
    return out.getvalue()


def lying_npy() -> bytes:
    """An NPY header that declares 8 GB of float64 data, followed by 16 bytes."""
    out = io.BytesIO()
    np.save(out, np.zeros(2))
    return out.getvalue().replace(b"(2,)", b"(1000000000,)")  # the header's padding absorbs the longer shape


@pytest.fixture(scope="module")
def probe(module_servers, tmp_path_factory):
    return module_servers(probe_dir(tmp_path_factory.mktemp("probe")), ONE_WORKER)


def worker_rss_kb(server) -> int:
    with open(f"/proc/{server.worker_pids()[0]}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


@pytest.mark.parametrize("content_type, make_body, status", [
    ("application/json", string_bomb, 413),
    ("application/x-npz", npz_bomb, 413),
    ("application/x-npy", lying_npy, 400),
    ("text/csv", lambda: "a\n" * 50_000 + "b" * 50_000 + "\n", 413),
])
def test_amplifying_bodies_are_refused_before_they_are_allocated(probe, content_type, make_body, status):
    body = make_body()
    before = worker_rss_kb(probe) if TARGET == "host" else 0
    started = time.monotonic()
    answer = error(probe.post(data=body, content_type=content_type), status)
    assert time.monotonic() - started < 5
    if status == 413:
        assert answer["type"] == "DecodedTooLarge" and "SMSERVE_DECODE_FACTOR" in answer["message"], answer
    else:
        assert "declares shape (1000000000,)" in answer["message"], answer
    if TARGET == "host":
        assert worker_rss_kb(probe) - before < 100_000, "the worker allocated the decoded body"
    still_serves(probe)


# ---------------------------------------------------------------- the codec bounds themselves

def test_decoded_bound_is_a_multiple_of_the_body_with_a_floor():
    assert codecs.decoded_bound(10) == codecs.MIN_DECODED_BOUND
    assert codecs.decoded_bound(10 * 2**20) == 10 * 2**20 * codecs.DECODE_FACTOR


def test_numbers_decode_within_the_bound():
    """Numeric JSON and CSV (at most 4x their text) and small string arrays pass untouched."""
    numbers = json.dumps(np.zeros((2000, 100)).tolist())
    assert codecs.decode_json(numbers).shape == (2000, 100)
    assert codecs.decode_csv("\n".join(["0,1,2"] * 100_000)).shape == (100_000, 3)
    assert codecs.decode_json(json.dumps([["a", "bb"], ["ccc", "d"]])).dtype == np.dtype("<U3")
    assert codecs.decode_jsonlines('["x", 1]\n["y", 2]\n').shape == (2, 2)


def test_a_json_lines_string_bomb_is_refused():
    with pytest.raises(DecodedTooLarge):
        codecs.decode_jsonlines("\n".join(['"a"'] * 60_000 + ['"' + "b" * 20_000 + '"']))


def test_a_sparse_matrix_is_made_dense_only_within_the_bound():
    """Found: a 1 KB sparse NPZ of shape 20000 x 20000 kept a worker busy until it was recycled."""
    out = io.BytesIO()
    scipy.sparse.save_npz(out, scipy.sparse.csr_matrix((20_000, 20_000), dtype=np.float64))
    body = out.getvalue()
    matrix = codecs.decode_npz(body)  # sparse stays sparse for a user input_fn
    assert scipy.sparse.issparse(matrix) and len(body) < 2000
    with pytest.raises(DecodedTooLarge, match="20000 x 20000"):
        codecs.dense(matrix, len(body))
    small = scipy.sparse.csr_matrix(np.eye(3))
    assert codecs.dense(small, 1000).tolist() == np.eye(3).tolist()


def test_npz_members_must_hold_what_their_headers_declare():
    out = io.BytesIO()
    np.savez(out, x=np.zeros(2))
    body = out.getvalue().replace(b"(2,)", b"(1000000000,)")
    with pytest.raises((BadRequest, DecodedTooLarge)):
        codecs.decode_npz(body)
