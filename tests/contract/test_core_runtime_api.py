"""Local endpoint emulation with the real client (issue 11): boto3's sagemaker-runtime `invoke_endpoint`, with
`endpoint_url` pointing at the server, works unchanged. Its headers reach the hooks as on SageMaker, answers
come back as boto3 reads them, and a model error is a `ModelError` with the model's status and message."""

from __future__ import annotations

import csv
import io
import json

import boto3
import numpy as np
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from ..models import from_npy, make_dir, npy, write_code

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)

RUNTIME_PROBE = '''
import io
import json

import numpy as np


def model_fn(model_dir):
    return 2.0


def transform_fn(model, body, content_type, accept, context):
    if content_type == "application/json" and isinstance(json.loads(body), dict):  # {"stream": n}: a generator
        request = json.loads(body)

        def parts():
            for i in range(request["stream"]):
                if i == request.get("fail_at"):
                    raise RuntimeError("the generator broke")
                yield json.dumps({"i": i, "accept": accept}) + "\\n"
        return parts(), "application/jsonlines"
    if content_type == "application/json":
        data = np.asarray(json.loads(body), dtype=np.float64)
    elif content_type == "text/csv":
        text = body if isinstance(body, str) else body.decode()  # text types arrive decoded (core §8)
        data = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)
    elif content_type == "application/x-npy":
        data = np.load(io.BytesIO(body), allow_pickle=False)
    else:
        raise ValueError(f"cannot read {content_type}")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "seen=" + str(context.custom_attributes))
    result = data * model
    if accept == "application/x-npy":
        out = io.BytesIO()
        np.save(out, result, allow_pickle=False)
        return out.getvalue(), accept
    if accept == "text/csv":
        return "\\n".join(",".join(repr(float(v)) for v in row) for row in np.atleast_2d(result)), accept
    return json.dumps({"result": result.tolist(), "target_model": context.target_model,
                       "inference_id": context.inference_id}), "application/json"
'''


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("runtime-api"))
    write_code(model_dir, RUNTIME_PROBE)
    return module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})


@pytest.fixture(scope="module")
def endpoint(server):
    return boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"max_attempts": 1}))


def test_invoke_endpoint_json_with_custom_attributes_target_model_and_inference_id(endpoint):
    answer = endpoint.invoke_endpoint(EndpointName="my-endpoint", Body=json.dumps([[1, 2], [3, 4]]),
                                      ContentType="application/json", Accept="application/json",
                                      CustomAttributes="trace=7", TargetModel="model.tar.gz", InferenceId="inf-1")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["CustomAttributes"] == "seen=trace=7"
    body = json.loads(answer["Body"].read())
    assert body == {"result": [[2.0, 4.0], [6.0, 8.0]], "target_model": "model.tar.gz", "inference_id": "inf-1"}


def test_invoke_endpoint_csv(endpoint):
    answer = endpoint.invoke_endpoint(EndpointName="my-endpoint", Body="1,2\n3,4.5\n", ContentType="text/csv",
                                      Accept="text/csv")
    assert answer["ContentType"] == "text/csv"
    rows = list(csv.reader(io.StringIO(answer["Body"].read().decode())))
    assert [[float(v) for v in row] for row in rows] == [[2.0, 4.0], [6.0, 9.0]]


def test_invoke_endpoint_npy(endpoint):
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    answer = endpoint.invoke_endpoint(EndpointName="my-endpoint", Body=npy(data),
                                      ContentType="application/x-npy", Accept="application/x-npy")
    assert answer["ContentType"] == "application/x-npy"
    np.testing.assert_array_equal(from_npy(answer["Body"].read()), data * 2)


def test_invoke_endpoint_model_error_reads_as_on_sagemaker(endpoint):
    with pytest.raises(ClientError) as caught:
        endpoint.invoke_endpoint(EndpointName="my-endpoint", Body=b"\x00\x01", ContentType="application/x-other")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    original = json.loads(error["OriginalMessage"])
    assert original["code"] == 500 and original["message"] == "cannot read application/x-other"
    assert "Traceback" not in error["OriginalMessage"]
    assert error["Error"]["Message"].startswith("Received server error (500) from primary with message")
    # the endpoint keeps serving
    again = endpoint.invoke_endpoint(EndpointName="my-endpoint", Body="[1]", ContentType="application/json")
    assert json.loads(again["Body"].read())["result"] == [2.0]


def test_invoke_endpoint_client_error_keeps_the_model_status(endpoint):
    with pytest.raises(ClientError) as caught:
        endpoint.invoke_endpoint(EndpointName="my-endpoint", Body=b"x" * 7_000_000, ContentType="application/json")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 413
    assert error["Error"]["Message"].startswith("Received client error (413) from primary")


def test_invoke_endpoint_with_response_stream_frames_each_chunk(endpoint):
    answer = endpoint.invoke_endpoint_with_response_stream(
        EndpointName="my-endpoint", Body=json.dumps({"stream": 4}), ContentType="application/json",
        Accept="application/jsonlines")
    assert answer["ContentType"] == "application/jsonlines"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    parts = [event["PayloadPart"]["Bytes"] for event in answer["Body"]]
    assert [json.loads(part) for part in parts] == [{"i": i, "accept": "application/jsonlines"} for i in range(4)]


def test_a_broken_response_stream_ends_with_model_stream_error(endpoint):
    answer = endpoint.invoke_endpoint_with_response_stream(
        EndpointName="my-endpoint", Body=json.dumps({"stream": 5, "fail_at": 2}), ContentType="application/json")
    received = []
    with pytest.raises(EventStreamError) as caught:
        for event in answer["Body"]:
            received.append(json.loads(event["PayloadPart"]["Bytes"])["i"])
    assert received == [0, 1]
    assert caught.value.response["Error"]["Code"] == "ModelStreamError"
    assert "the generator broke" in caught.value.response["Error"]["Message"]
    again = endpoint.invoke_endpoint(EndpointName="my-endpoint", Body="[1]", ContentType="application/json")
    assert json.loads(again["Body"].read())["result"] == [2.0]


def test_a_generator_streams_chunked_on_invocations_and_a_break_cuts_the_connection(server):
    """Chunks leave as the generator yields them (HTTP/1.1 chunked); a failure after the first chunk cannot change
    the status, so the connection is cut before the final chunk: the client sees an incomplete response."""
    with requests.post(server.url + "/invocations", data=json.dumps({"stream": 3}), stream=True, timeout=30,
                       headers={"Content-Type": "application/json"}) as response:
        assert response.status_code == 200 and response.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in response.headers
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["i"] for line in lines] == [0, 1, 2]
    with requests.post(server.url + "/invocations", data=json.dumps({"stream": 5, "fail_at": 3}), stream=True,
                       timeout=30, headers={"Content-Type": "application/json"}) as response:
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            list(response.iter_lines())
    assert server.post(data="[2]").json()["result"] == [4.0]


def test_errors_and_broken_streams_leave_no_unhandled_exception(server):
    """Every answer above, the errors and the broken streams included, was handled by smserve itself: nothing
    reached uvicorn as an unhandled application error (run last in this module)."""
    with requests.Session() as session:  # two errors on one kept-alive connection: both answered
        for _ in range(2):
            response = session.post(server.url + "/invocations", data=b"x", timeout=10,
                                    headers={"Content-Type": "application/x-other"})
            assert response.status_code == 500 and response.headers.get("Connection") != "close"
    assert "Exception in ASGI application" not in server.logs()
