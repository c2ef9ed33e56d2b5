"""Runs the SageMaker Python SDK (v2) local mode against an smserve image; prints what each predictor returned.

Runs in its own environment (.venv/sdk, requirements/sdk.txt: the SDK pins numpy < 2 and pandas, which the
family environments must not get), started by tests/container/test_sdk_local.py. Nothing here imitates the
SDK: it is the user's code, `Model(...).deploy(instance_type="local")` and `predictor.predict(...)`.

The one adjustment is the compose file's network, and it lives here in the harness, not in the product: the
SDK writes a compose file with a bridge network (`sagemaker-local`) and a `PORT:8080` mapping, and this machine
has no bridge network (dockerd runs with --bridge=none; creating one is not allowed here). After the SDK writes
the file, the harness switches the service to the host network and tells the server the SDK's serving port
through SAGEMAKER_BIND_TO_PORT (what a port mapping would have done). No AWS call is made: telemetry is opted
out, code stays local (`local_code`), the framework model gets a code_location so no default bucket is looked up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import numpy as np
import yaml
from sagemaker.deserializers import CSVDeserializer, JSONDeserializer, NumpyDeserializer
from sagemaker.local import LocalSession
from sagemaker.local import image as local_image
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer, JSONSerializer, NumpySerializer

ROLE = "arn:aws:iam::111111111111:role/SageMakerRole"
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def use_host_network(port: int) -> None:
    """Rewrite each compose file the SDK writes: host network instead of the bridge, the port by variable."""
    write = local_image._SageMakerContainer._generate_compose_file

    def write_for_host_network(self, command, additional_volumes=None, additional_env_vars=None):
        content = write(self, command, additional_volumes=additional_volumes,
                        additional_env_vars=additional_env_vars)
        content.pop("networks", None)
        for service in content["services"].values():
            service.pop("networks", None)
            service.pop("ports", None)
            service["network_mode"] = "host"
            service["environment"] = [*service["environment"], f"SAGEMAKER_BIND_TO_PORT={port}"]
        with open(os.path.join(self.container_root, local_image.DOCKER_COMPOSE_FILENAME), "w") as out:
            yaml.safe_dump(content, out, default_flow_style=False)
        return content

    local_image._SageMakerContainer._generate_compose_file = write_for_host_network


def session(port: int, root: str) -> LocalSession:
    local = LocalSession(sagemaker_config=SDK_CONFIG)
    local.config = {"local": {"local_code": True, "serving_port": port, "container_root": root}}
    return local


def build_model(args: argparse.Namespace, sdk_session: LocalSession) -> Model:
    common = {"image_uri": args.image, "model_data": f"file://{args.model_data}", "role": ROLE,
              "sagemaker_session": sdk_session}
    if args.framework == "none":
        return Model(predictor_cls=Predictor, **common)
    if args.framework == "pytorch":
        from sagemaker.pytorch import PyTorchModel as FrameworkModel
    else:
        from sagemaker.mxnet import MXNetModel as FrameworkModel
    return FrameworkModel(entry_point=args.entry_point, source_dir=args.source_dir, py_version="py3",
                          framework_version=args.framework_version, code_location="s3://local-only/code",
                          **common)


def predict_all(predictor, rows: list) -> dict:
    """The three serializer/deserializer pairs users reach for, each returning plain JSON-able values."""
    results = {}
    predictor.serializer, predictor.deserializer = JSONSerializer(), JSONDeserializer()
    results["json"] = predictor.predict(rows)
    predictor.serializer, predictor.deserializer = CSVSerializer(), CSVDeserializer()
    results["csv"] = predictor.predict(rows)
    predictor.serializer, predictor.deserializer = NumpySerializer(), NumpyDeserializer()
    answer = predictor.predict(np.asarray(rows, dtype=np.float32))
    results["npy"] = {"dtype": str(answer.dtype), "values": answer.tolist()}
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--model-data", required=True, help="path of model.tar.gz")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True, help="folder for the SDK's compose files")
    parser.add_argument("--rows", required=True, help="JSON list of rows to predict")
    parser.add_argument("--framework", choices=("none", "pytorch", "mxnet"), default="none")
    parser.add_argument("--framework-version", default="")
    parser.add_argument("--entry-point", default="inference.py")
    parser.add_argument("--source-dir")
    parser.add_argument("--out", required=True, help="file for the JSON results (the SDK writes to stdout)")
    args = parser.parse_args()

    use_host_network(args.port)
    model = build_model(args, session(args.port, args.root))
    try:
        # wait=False: local mode's create_endpoint already returns once /ping answers 200; waiting adds the
        # SDK's fixed 30 s describe_endpoint poll and nothing else.
        predictor = model.deploy(initial_instance_count=1, instance_type="local", wait=False)
        results = predict_all(predictor, json.loads(args.rows))
    except Exception:
        traceback.print_exc()
        status = 1
    else:
        with open(args.out, "w") as out:
            json.dump(results, out)
        status = 0
    finally:
        if model.endpoint_name:  # stops the compose service; its thread would otherwise keep us alive
            model.sagemaker_session.delete_endpoint(model.endpoint_name)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

if __name__ == "__main__":
    sys.exit(main())
