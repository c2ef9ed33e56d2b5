"""tensorflow.md §2, §3, §6, §7, §10 as unit tests: attributes, default conversions, discovery and backend
planning, with no server and no TensorFlow (only the skipped-when-absent protobuf parse of the model config)."""

from __future__ import annotations

import csv
import json
import os
import random
import re
from pathlib import Path

import pytest

from smserve.errors import BadRequest, ConfigError, StartupError, UnsupportedMediaType
from tests.families import require_framework

require_framework("tensorflow")  # the family package is installed only beside TensorFlow (.venv/tensorflow)

from smserve_tensorflow.attributes import TfsAttributes, backend_path, parse_custom_attributes  # noqa: E402
from smserve_tensorflow.conversion import (answer_content_type, backend_error_body, one_line, to_backend_body)
from smserve_tensorflow.discovery import (BatchingConfig, Discovery, Instance, ServedModel, backend_argv,
                                          batching_parameters_text, choose_default_model, defaulted_keys,
                                          defaulted_warning, discover, find_models, gpu_memory_fraction,
                                          instance_gpu, model_config_text, parse_batching, plan_instances)

JSON, JSONLINES, CSV = "application/json", "application/jsonlines", "text/csv"


# ---------------------------------------------------------------- §6 custom attributes

def test_tf_18_no_custom_attributes_means_default_model():
    for raw in (None, "", "foo=bar"):
        assert parse_custom_attributes(raw) == TfsAttributes(None, None, None)
    assert backend_path("half_plus_three", None, None) == "/v1/models/half_plus_three:predict"


def test_tf_3_version_attribute_selects_version():
    attrs = parse_custom_attributes("tfs-model-version=123")
    assert attrs == TfsAttributes(None, "123", None)
    assert backend_path("half_plus_three", attrs.model_version, attrs.method) == \
        "/v1/models/half_plus_three/versions/123:predict"


def test_tf_6_attributes_all_keys_and_other_keys_ignored():
    attrs = parse_custom_attributes("foo=1,tfs-model-name=half_plus_two, tfs-model-version=7,tfs-method=regress,"
                                    "tfs-unknown=x,TFS-MODEL-NAME=ignored")
    assert attrs == TfsAttributes("half_plus_two", "7", "regress")
    assert backend_path(attrs.model_name, attrs.model_version, attrs.method) == \
        "/v1/models/half_plus_two/versions/7:regress"
    assert parse_custom_attributes("tfs-method=classify").method == "classify"


def test_tf_6_attributes_split_on_first_equals_sign():
    # an unknown key with '=' in its value is ignored, not an error
    assert parse_custom_attributes("tfs-other=a=b,tfs-model-name=m") == TfsAttributes("m", None, None)
    with pytest.raises(BadRequest) as info:
        parse_custom_attributes("tfs-model-version=1=2")
    assert info.value.message == "invalid tfs-model-version"


@pytest.mark.parametrize("raw, message", [
    ("tfs-model-version=abc", "invalid tfs-model-version"),
    ("tfs-method=explain", "invalid tfs-method"),
    ("tfs-model-name=../etc", "invalid tfs-model-name"),
    ("tfs-model-name=a/b", "invalid tfs-model-name"),
    ("tfs-model-name=" + "a" * 256, "invalid tfs-model-name"),
    ("tfs-model-version=-1", "invalid tfs-model-version"),
    ("tfs-model-version=\u0661", "invalid tfs-model-version"),  # a non-ASCII digit
    ("tfs-method=Predict", "invalid tfs-method"),
    ("tfs-model-version= ", "invalid tfs-model-version"),
])
def test_tf_24_invalid_attributes_are_400(raw, message):
    with pytest.raises(BadRequest) as info:
        parse_custom_attributes(raw)
    assert info.value.status == 400
    assert info.value.message == message


def test_tf_25_attribute_values_are_stripped():
    attrs = parse_custom_attributes("tfs-model-version= 123 , tfs-model-name= half_plus_three ,tfs-method= predict")
    assert attrs == TfsAttributes("half_plus_three", "123", "predict")
    assert parse_custom_attributes("tfs-model-name=a" + "b" * 254).model_name == "a" + "b" * 254


# ---------------------------------------------------------------- §7.1 dispatch

def test_tf_22_unsupported_media_type_is_415():
    with pytest.raises(UnsupportedMediaType) as info:
        to_backend_body(b"\x89PNG", "application/x-image")
    assert info.value.status == 415
    assert info.value.message == "Unsupported Media Type: application/x-image"
    for missing in (None, "", "  "):
        with pytest.raises(UnsupportedMediaType) as info:
            to_backend_body(b"[1]", missing)
        assert info.value.message == "Unsupported Media Type: Unknown"


def test_tf_23_content_type_case_and_parameters_ignored():
    assert to_backend_body(b"[1,2,5]", "Application/JSON; charset=utf-8") == b'{"instances": [[1,2,5]]}'
    assert to_backend_body(b"1.0,2.0", "TEXT/CSV;charset=UTF-8") == b'{"instances": [[1.0,2.0]]}'
    assert to_backend_body(b"[1]\n[2]", " application/JSONS ") == b'{"instances": [[1], [2]]}'


@pytest.mark.parametrize("content_type", [JSON, CSV])
def test_empty_body_is_passed_to_the_backend(content_type):
    # the backend answers 400 "JSON Parse error: The document is empty" (§7.4)
    assert to_backend_body(b"", content_type) == b""
    assert to_backend_body(b" \n", content_type) == b" \n"


# ---------------------------------------------------------------- §7.2 JSON path

def test_tf_2_tfs_request_forwarded_unchanged():
    for body in (b'{"instances": [1,2,5]}', b'{"inputs" \n: [1,2,5]}', b'{"examples":[{"x": 1.0}]}',
                 b'  {"signature_name": "s", "instances": [[1],[2]]}\n'):
        assert to_backend_body(body, JSON) is body


def test_tf_5_list_of_lists_is_the_batch():
    assert to_backend_body(b"[[1,2,5],[1,2,5]]", JSON) == b'{"instances": [[1,2,5],[1,2,5]]}'
    # whitespace between the brackets, as a pretty printer writes it (AWS tolerates it too)
    pretty = b"[\n  [1, 2, 5],\n  [1, 2, 5]\n]\n"
    assert json.loads(to_backend_body(pretty, JSON)) == {"instances": [[1, 2, 5], [1, 2, 5]]}


@pytest.mark.parametrize("content_type", [JSON, JSONLINES, "application/jsons"])
def test_tf_6_json_lines_two_rows_for_each_json_type(content_type):
    assert to_backend_body(b"[1,2,5]\n[1,2,5]", content_type) == b'{"instances": [[1,2,5], [1,2,5]]}'


def test_tf_6_json_lines_crlf_blank_lines_and_trailing_newline():
    body = b"  [1,2,5]\r\n\r\n  [3,4,6]  \r\n[7]\n"
    assert to_backend_body(body, JSONLINES) == b'{"instances": [[1,2,5], [3,4,6], [7]]}'


def test_tf_6_json_lines_one_line_is_the_value():
    # `}{` on one line is still JSON Lines by the textual rule; one line becomes the bare instances value
    assert to_backend_body(b'{"a":1}{"b":2}', JSON) == b'{"instances": {"a":1}{"b":2}}'


def test_tf_7_json_lines_objects():
    body = b'{"x": [1,2,5]}\n{"x": [1,2,5]}'
    assert to_backend_body(body, JSON) == b'{"instances": [{"x": [1,2,5]}, {"x": [1,2,5]}]}'


def test_tf_8_generic_array_wrapped():
    assert to_backend_body(b"[1,2,5]", JSON) == b'{"instances": [[1,2,5]]}'
    assert to_backend_body(b"  [1,2,5]\n", JSON) == b'{"instances": [[1,2,5]]}'


def test_tf_8_generic_object_wrapped():
    assert to_backend_body(b'{"x": [1,2,5]}', JSON) == b'{"instances": [{"x": [1,2,5]}]}'


def test_tf_9_token_inside_a_string_is_still_a_tfs_request():
    body = b'{"instances": ["]["]}'
    assert to_backend_body(body, JSON) is body


def test_tf_16_and_17_unusual_json_bodies_go_to_the_backend_as_instances():
    assert to_backend_body(b"whatever", JSON) == b'{"instances": [whatever]}'
    assert to_backend_body(b'{"junk": "data"}', JSON) == b'{"instances": [{"junk": "data"}]}'
    assert to_backend_body(b"3.5", JSON) == b'{"instances": [3.5]}'


# ---------------------------------------------------------------- §7.3 CSV path

def test_tf_10_csv_single_value():
    assert to_backend_body(b"1.0", CSV) == b'{"instances": [1.0]}'
    assert to_backend_body(b"0.0", CSV) == b'{"instances": [0.0]}'


def test_tf_11_csv_one_line_several_columns():
    assert to_backend_body(b"1.0,2.0,5.0", CSV) == b'{"instances": [[1.0,2.0,5.0]]}'
    assert to_backend_body(b"0.0,2.0,5.0", CSV) == b'{"instances": [[0.0,2.0,5.0]]}'


def test_tf_12_csv_one_value_per_line():
    assert to_backend_body(b"1.0\n2.0\n5.0", CSV) == b'{"instances": [1.0,2.0,5.0]}'


def test_tf_13_csv_two_lines_thirty_columns():
    line = ",".join(f"{i}.5" for i in range(30))
    converted = to_backend_body(f"{line}\n{line}\n".encode(), CSV)
    rows = json.loads(converted)["instances"]
    assert len(rows) == 2 and all(len(row) == 30 for row in rows)
    assert rows[0] == [i + 0.5 for i in range(30)]


def test_tf_14_csv_strings_and_quoted_commas():
    assert to_backend_body(b'1.0,hello,"world,earth"', CSV) == b'{"instances": [[1.0,"hello","world,earth"]]}'


def test_csv_doubled_quote_is_a_literal_quote():
    converted = to_backend_body(b'"say ""hi""",2', CSV)
    assert json.loads(converted) == {"instances": [['say "hi"', 2]]}


def test_csv_one_field_lines_are_bare_values():
    assert to_backend_body(b'hello\n"a,b"\n3', CSV) == b'{"instances": ["hello","a,b",3]}'


def test_csv_crlf_and_empty_lines_skipped():
    assert to_backend_body(b"\r\n1,2\r\n\r\n3,4\r\n\r\n", CSV) == b'{"instances": [[1,2],[3,4]]}'


def test_csv_only_json_numbers_are_bare():
    converted = to_backend_body(b"1e5,-0.5,0,01,.5,1.,+1,NaN,2E-3", CSV)
    assert converted == b'{"instances": [[1e5,-0.5,0,"01",".5","1.","+1","NaN",2E-3]]}'
    assert json.loads(converted)["instances"][0][0] == 1e5


def test_csv_blanks_around_numbers_tolerated():
    assert json.loads(to_backend_body(b"1.0, 2.0 ,5", CSV)) == {"instances": [[1.0, 2.0, 5]]}
    assert json.loads(to_backend_body(b"1.0, hello", CSV)) == {"instances": [[1.0, " hello"]]}


def test_csv_strings_are_escaped_json():
    converted = to_backend_body('h\u00e9llo,back\\slash,tab\there,"new ""q"""'.encode(), CSV)
    assert json.loads(converted) == {"instances": [["h\u00e9llo", "back\\slash", "tab\there", 'new "q"']]}


def test_csv_empty_fields_are_empty_strings():
    assert json.loads(to_backend_body(b"1,,2", CSV)) == {"instances": [[1, "", 2]]}


def test_csv_invalid_utf8_is_400():
    with pytest.raises(BadRequest):
        to_backend_body(b"abc,\xff\xfe", CSV)


def reference_csv(body: bytes) -> object:
    """§7.3 written the plain way: the converter's fast paths must agree with it."""
    number = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
    rows = []
    for line in re.split(rb"\r?\n", body.strip()):
        line = line.strip()
        if not line:
            continue
        fields = next(csv.reader([line.decode()]))
        values = [json.loads(f) if number.fullmatch(f.strip(" \t")) else f for f in fields]
        rows.append(values if len(values) > 1 else values[0])
    return {"instances": rows}


def test_csv_fast_paths_agree_with_plain_reading():
    rng = random.Random(7)
    tokens = ["1", "0.5", "-2e3", "0", "12.25E+2", " 3 ", "\t4", "01", "a", "1.", '"x,y"', '"5"', "", "-", "e5"]
    separators = ["\n", "\r\n", "\n\n", " \n  ", "\r\n\r\n"]
    numeric_only = [t for t in tokens[:7]]
    for case in range(400):
        pool = numeric_only if case % 2 else tokens
        lines = [",".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 5))]
        body = "".join(line + rng.choice(separators) for line in lines).encode()
        if not body.strip(b" \t\r\n,"):
            continue
        assert json.loads(to_backend_body(body, CSV)) == reference_csv(body), body


def test_csv_long_numeric_line_stays_one_row():
    line = ",".join(["0.125"] * 100_000).encode()
    converted = to_backend_body(line, CSV)
    assert converted == b'{"instances": [[' + line + b"]]}"


# ---------------------------------------------------------------- §7.4 response

def test_tf_19_accept_jsonlines():
    assert answer_content_type("application/jsonlines") == JSONLINES
    assert answer_content_type("application/json;q=0.5, application/jsonlines") == JSONLINES
    assert answer_content_type("Application/JSONLines; q=0.9, text/csv") == JSONLINES


def test_tf_20_accept_json_listed_first_wins():
    assert answer_content_type("application/json, application/jsonlines") == JSON
    assert answer_content_type("application/jsonlines;q=0.5, application/json") == JSON
    assert answer_content_type("application/jsonlines;q=0, */*") == JSON


def test_tf_21_unacceptable_accept_still_answers_json():
    for accept in ("text/csv", None, "", "*/*", "application/*", "application/x-npy"):
        assert answer_content_type(accept) == JSON


def test_tf_9_backend_400_message_unescaped_once():
    body = (b'{ "error": "Failed to process element: 0 of \\\'instances\\\' list. JSON Value: \\"][\\" '
            b'Type: String is not of expected type: float \\\'instances\\\'" }')
    fixed = backend_error_body(400, body)
    assert fixed == (b'{ "error": "Failed to process element: 0 of \'instances\' list. JSON Value: \\"][\\" '
                     b'Type: String is not of expected type: float \\\'instances\\\'" }')
    assert backend_error_body(404, body) is body
    assert backend_error_body(400, b'{"error": "x"}') == b'{"error": "x"}'


def test_one_line_is_json_equal():
    pretty = b'{\n    "predictions": [3.5, 4.0, 5.5\n    ]\r\n}'
    flat = one_line(pretty)
    assert b"\n" not in flat and b"\r" not in flat
    assert json.loads(flat) == json.loads(pretty)
    already = b'{"predictions": [3.5]}'
    assert one_line(already) is already
    escaped = b'{\n"error": "line\\nbreak"\n}'
    assert json.loads(one_line(escaped)) == {"error": "line\nbreak"}


# ---------------------------------------------------------------- §3 discovery

def saved_model(path: Path, name: str = "saved_model.pb") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(b"")
    (path / "variables").mkdir(exist_ok=True)
    return path


def test_tf_1_model_at_version_dir_is_named_after_model_dir(tmp_path):
    root = tmp_path / "model"
    saved_model(root / "1")
    assert find_models(root) == (ServedModel("model", root, (1,)),)


@pytest.mark.parametrize("relative, name, version", [
    ("model/1", "model", 1),
    ("model/half_plus_three/00000123", "half_plus_three", 123),
    ("model/export/Servo/1", "Servo", 1),
    ("model/m/000", "m", 0),
])
def test_discovery_table(tmp_path, relative, name, version):
    saved_model(tmp_path / relative)
    (model,) = find_models(tmp_path / "model")
    assert (model.name, model.versions, model.base_path) == (name, (version,), (tmp_path / relative).parent)


def test_tf_3_every_version_is_served(tmp_path):
    base = tmp_path / "half_plus_three"
    for version in ("00000124", "00000123"):
        saved_model(base / version)
    (model,) = find_models(tmp_path)
    assert model.versions == (123, 124)


def test_tf_4_hidden_version_ignored(tmp_path):
    base = tmp_path / "half_plus_three"
    saved_model(base / "00000123")
    saved_model(base / ".00000111")
    saved_model(tmp_path / ".hidden" / "other" / "1")
    assert find_models(tmp_path) == (ServedModel("half_plus_three", base, (123,)),)


def test_pbtxt_saved_model_found(tmp_path):
    saved_model(tmp_path / "m" / "5", "saved_model.pbtxt")
    assert find_models(tmp_path)[0].versions == (5,)


def test_models_sorted_by_name(tmp_path):
    saved_model(tmp_path / "zeta" / "1")
    saved_model(tmp_path / "alpha" / "2")
    assert [m.name for m in find_models(tmp_path)] == ["alpha", "zeta"]


def test_no_saved_model_is_a_startup_error(tmp_path):
    saved_model(tmp_path / "m" / "not-a-version")
    with pytest.raises(StartupError, match=f"no SavedModel bundles found under {tmp_path}$"):
        find_models(tmp_path)
    with pytest.raises(StartupError, match="no SavedModel bundles found under"):
        find_models(tmp_path / "missing")


def test_version_dir_must_be_below_model_dir(tmp_path):
    root = saved_model(tmp_path / "1")  # the model dir itself is numbered: its parent is outside
    with pytest.raises(StartupError):
        find_models(root)


def test_duplicate_model_names_are_a_startup_error(tmp_path):
    saved_model(tmp_path / "a" / "Servo" / "1")
    saved_model(tmp_path / "b" / "Servo" / "1")
    with pytest.raises(StartupError) as info:
        find_models(tmp_path)
    assert str(tmp_path / "a" / "Servo") in str(info.value) and str(tmp_path / "b" / "Servo") in str(info.value)


def test_code_inside_version_dir_warns(tmp_path):
    version = saved_model(tmp_path / "m" / "1")
    (version / "code").mkdir()
    result = discover(tmp_path)
    assert isinstance(result, Discovery) and result.models[0].name == "m"
    assert len(result.warnings) == 1 and str(version / "code") in result.warnings[0]


def test_clean_layout_has_no_warnings(tmp_path):
    saved_model(tmp_path / "m" / "1")
    (tmp_path / "code").mkdir()
    assert discover(tmp_path).warnings == ()


def test_numbered_dir_without_saved_model_is_a_version_with_a_warning(tmp_path):
    saved_model(tmp_path / "m" / "1")
    (tmp_path / "m" / "2").mkdir()
    result = discover(tmp_path)
    assert result.models[0].versions == (1, 2)
    assert any("version 2" in w for w in result.warnings)


def test_symlink_loop_terminates(tmp_path):
    saved_model(tmp_path / "m" / "1")
    os.symlink(tmp_path, tmp_path / "m" / "loop")
    assert [m.name for m in find_models(tmp_path)] == ["m"]


def test_default_model_choice():
    one = (ServedModel("half_plus_three", Path("/x"), (1,)),)
    two = (ServedModel("zeta", Path("/z"), (1,)), ServedModel("alpha", Path("/a"), (1,)))
    assert choose_default_model(one, None) == ("half_plus_three", None)
    assert choose_default_model(one, "None") == ("half_plus_three", None)
    assert choose_default_model(two, "zeta") == ("zeta", None)
    name, warning = choose_default_model(two, None)
    assert name == "alpha" and "SAGEMAKER_TFS_DEFAULT_MODEL_NAME" in warning
    with pytest.raises(StartupError) as info:
        choose_default_model(two, "beta")
    assert "alpha" in str(info.value) and "zeta" in str(info.value) and "beta" in str(info.value)


# ---------------------------------------------------------------- §2 ports, GPUs

def test_ports_without_range_first_instance_uses_aws_ports():
    assert plan_instances(1, None) == (Instance(9000, 8501),)
    assert plan_instances(1, "") == (Instance(9000, 8501),)


def test_ports_without_range_further_instances_get_free_ports():
    instances = plan_instances(3, None)
    assert instances[0] == Instance(9000, 8501)
    ports = [p for inst in instances for p in (inst.grpc_port, inst.rest_port)]
    assert len(set(ports)) == 6 and all(0 < p < 65536 for p in ports)


def test_ports_with_range_are_consecutive_pairs():
    assert plan_instances(2, "10000-10010") == (Instance(10000, 10001), Instance(10002, 10003))
    assert plan_instances(1, (9000, 9002)) == (Instance(9000, 9001),)
    assert plan_instances(1, "9000-9002") == (Instance(9000, 9001),)


def test_ports_range_too_small_is_a_startup_error():
    with pytest.raises(StartupError, match="SAGEMAKER_SAFE_PORT_RANGE"):
        plan_instances(2, "9000-9003")  # AWS's rule: low + 2 x count > high
    with pytest.raises(StartupError):
        plan_instances(1, "9000-9001")


@pytest.mark.parametrize("value", ["abc", "9000", "9000-8000", "0-10", "1-2-3", "9000-70000"])
def test_ports_malformed_range_names_variable_and_form(value):
    with pytest.raises(StartupError) as info:
        plan_instances(1, value)
    assert "SAGEMAKER_SAFE_PORT_RANGE" in str(info.value) and "<low>-<high>" in str(info.value)


def test_instance_count_must_be_positive():
    with pytest.raises(ConfigError):
        plan_instances(0, None)


def test_gpu_memory_fraction_and_gpu_choice():
    assert gpu_memory_fraction(1, 0.2) is None
    assert gpu_memory_fraction(2, 0.2) == 0.4
    assert gpu_memory_fraction(3, 0.2) == 0.2667
    assert instance_gpu(3, 2) == 1
    assert instance_gpu(2, 4) == 2
    assert instance_gpu(0, 1) is None and instance_gpu(1, 0) is None


# ---------------------------------------------------------------- §10 batching

def test_tf_44_batching_parameter_lines():
    cfg = parse_batching("true", "16", "500", "100", "1", sagemaker_batch=False, cpu_count=2)
    assert cfg == BatchingConfig(True, 16, 500, 100, 1, ())
    assert batching_parameters_text(cfg) == ("max_batch_size { value: 16 }\n"
                                             "batch_timeout_micros { value: 500 }\n"
                                             "num_batch_threads { value: 100 }\n"
                                             "max_enqueued_batches { value: 1 }\n")
    assert defaulted_keys(cfg) == [] and defaulted_warning(cfg) is None


def test_tf_44_batching_defaults():
    cfg = parse_batching("TRUE", None, " ", None, None, sagemaker_batch=False, cpu_count=4)
    assert (cfg.enabled, cfg.max_batch_size, cfg.batch_timeout_micros, cfg.num_batch_threads,
            cfg.max_enqueued_batches) == (True, 8, 1000, 4, 4)
    assert defaulted_keys(cfg) == ["max_batch_size", "batch_timeout_micros", "num_batch_threads",
                                   "max_enqueued_batches"]
    warning = defaulted_warning(cfg)
    assert "\n" not in warning and "SAGEMAKER_TFS_MAX_BATCH_SIZE" in warning
    assert parse_batching("true", 16, None, None, None, False, 4).max_batch_size == 16  # already-parsed ints too
    job = parse_batching("true", "4", None, None, None, sagemaker_batch=True, cpu_count=4)
    assert job.max_enqueued_batches == 100_000_000 and defaulted_keys(job)[0] == "batch_timeout_micros"


def test_batching_off_by_default():
    for enable in (None, "", "false", "FALSE"):
        assert parse_batching(enable, None, None, None, None, False, 2).enabled is False
    # AWS reads the numbers only when batching is on
    assert parse_batching("false", "abc", None, None, None, False, 2).enabled is False


def test_tf_45_enable_batching_yes_is_an_error():
    with pytest.raises(ConfigError) as info:
        parse_batching("yes", None, None, None, None, False, 2)
    assert info.value.variable == "SAGEMAKER_TFS_ENABLE_BATCHING" and info.value.value == "yes"
    assert "true" in info.value.accepted and "false" in info.value.accepted


@pytest.mark.parametrize("position, variable", [(0, "SAGEMAKER_TFS_MAX_BATCH_SIZE"),
                                                (1, "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS"),
                                                (2, "SAGEMAKER_TFS_NUM_BATCH_THREADS"),
                                                (3, "SAGEMAKER_TFS_MAX_ENQUEUED_BATCHES")])
@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5"])
def test_batching_numbers_must_be_positive_integers(position, variable, bad):
    numbers = [None] * 4
    numbers[position] = bad
    with pytest.raises(ConfigError) as info:
        parse_batching("true", *numbers, sagemaker_batch=False, cpu_count=2)
    assert info.value.variable == variable and info.value.value == bad


# ---------------------------------------------------------------- §3 backend configuration

MODELS = (ServedModel("half_plus_three", Path("/opt/ml/model/half_plus_three"), (123, 124)),
          ServedModel("half_plus_two", Path("/opt/ml/model/half_plus_two"), (123,)))


def test_model_config_text_lists_every_version():
    assert model_config_text(MODELS[:1]) == (
        "model_config_list {\n"
        "  config {\n"
        '    name: "half_plus_three"\n'
        '    base_path: "/opt/ml/model/half_plus_three"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      specific {\n"
        "        versions: 123\n"
        "        versions: 124\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n")


def test_model_config_text_parses_as_model_server_config():
    text_format = pytest.importorskip("google.protobuf.text_format")
    config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    odd = ServedModel("odd", Path('/opt/ml/model/we"ird\\dir \u00e9/odd'), (0, 7))
    parsed = text_format.Parse(model_config_text(MODELS + (odd,)), config_pb2.ModelServerConfig())
    configs = parsed.model_config_list.config
    assert [c.name for c in configs] == ["half_plus_three", "half_plus_two", "odd"]
    assert [c.base_path for c in configs] == [str(m.base_path) for m in MODELS + (odd,)]
    assert [list(c.model_version_policy.specific.versions) for c in configs] == [[123, 124], [123], [0, 7]]
    assert all(c.model_platform == "tensorflow" for c in configs)


def test_backend_argv_minimal():
    argv = backend_argv(["tensorflow_model_server"], Instance(9000, 8501), "/tmp/model.cfg", None, 0, 0, None, None)
    assert argv == ["tensorflow_model_server", "--port=9000", "--rest_api_port=8501",
                    "--model_config_file=/tmp/model.cfg", "--max_num_load_retries=0"]


def test_backend_argv_every_option():
    argv = backend_argv(["python", "-m", "backend"], Instance(10000, 10001), Path("/c/m.cfg"), "/c/b.cfg",
                        2, 3, 0.4, "/tmp/tf.sock")
    assert argv == ["python", "-m", "backend", "--port=10000", "--rest_api_port=10001",
                    "--model_config_file=/c/m.cfg", "--max_num_load_retries=0",
                    "--enable_batching=true", "--batching_parameters_file=/c/b.cfg",
                    "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=3",
                    "--per_process_gpu_memory_fraction=0.4", "--smserve_local_socket=/tmp/tf.sock"]
