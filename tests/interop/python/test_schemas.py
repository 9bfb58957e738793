"""alknet's schemas, checked by independent Python tools.

- every service document (and every schema inside it) passes the JSON Schema 2020-12
  meta-schema (`jsonschema`);
- real payloads from the Rust side (`cargo run -p alknet --example interop_samples`)
  validate against their schemas, and inputs the Rust side refused do not;
- `openapi.json` is a valid OpenAPI 3.1 document (`openapi-spec-validator`), and real
  error bodies match the responses it declares.
"""

import json
import pathlib
import subprocess

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts as versions
from openapi_spec_validator.versions.shortcuts import get_spec_version
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas"
SERVICE_DOCUMENTS = sorted((SCHEMAS / "services").glob("*.json"))


def load(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def documents():
    assert SERVICE_DOCUMENTS, f"no service documents in {SCHEMAS / 'services'}"
    return {load(p)["namespace"]: load(p) for p in SERVICE_DOCUMENTS}


@pytest.fixture(scope="session")
def openapi():
    return load(SCHEMAS / "openapi.json")


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "-p", "alknet", "--example", "interop_samples", "--", str(out)],
        cwd=ROOT,
        check=True,
    )
    samples = json.loads((out / "samples.json").read_text())
    assert samples, "the Rust side produced no samples"
    return samples


def embedded_schemas(document):
    """Every schema inside a service document, with where it sits."""
    for name, schema in document["$defs"].items():
        yield f"$defs/{name}", schema
    for op_name, op in document["operations"].items():
        for side in ("input", "output", "item"):
            if side in op:
                yield f"operations/{op_name}/{side}", op[side]
        for code, error in op["errors"].items():
            if "details" in error:
                yield f"operations/{op_name}/errors/{code}/details", error["details"]


def validator_for(document, pointer):
    """A validator for the schema at `pointer` inside `document`, resolving its `$ref`s
    against the document as a real consumer would."""
    uri = f"https://schemas.alknet.invalid/services/{document['namespace']}.json"
    registry = Registry().with_resource(uri, Resource.from_contents(document, DRAFT202012))
    return Draft202012Validator({"$ref": f"{uri}#/{pointer}"}, registry=registry)


@pytest.mark.parametrize("path", SERVICE_DOCUMENTS, ids=lambda p: p.name)
def test_service_documents_pass_the_2020_12_meta_schema(path):
    document = load(path)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    for where, schema in embedded_schemas(document):
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as err:  # name the schema that failed
            raise AssertionError(f"{path.name}#/{where}: {err}") from err


def test_every_reference_resolves(documents):
    for document in documents.values():
        for where, _ in embedded_schemas(document):
            validator = validator_for(document, where)
            # Walking a document with the validator resolves every reference it reaches.
            list(validator.iter_errors(None))


def sample_pointer(documents, sample):
    document = documents[sample["service"]]
    op = document["operations"][sample["operation"]]
    if sample["side"] == "error_details":
        return document, f"operations/{sample['operation']}/errors/{sample['code']}/details"
    assert sample["side"] in op, f"{sample['operation']} has no {sample['side']} schema"
    return document, f"operations/{sample['operation']}/{sample['side']}"


def test_rust_payloads_validate_against_their_schemas(documents, samples):
    checked = 0
    for sample in samples:
        if sample["side"] == "error_body" or not sample["valid"]:
            continue
        document, pointer = sample_pointer(documents, sample)
        errors = list(validator_for(document, pointer).iter_errors(sample["value"]))
        assert not errors, f"{pointer}: {sample['value']!r}: {errors[0].message}"
        checked += 1
    sides = {s["side"] for s in samples if s["valid"]}
    assert {"input", "output", "item", "error_details"} <= sides, sides
    assert checked >= 10


def test_inputs_the_rust_side_refused_fail_their_schemas(documents, samples):
    refused = [s for s in samples if s["side"] == "input" and not s["valid"]]
    assert refused, "the Rust side refused no input"
    for sample in refused:
        document, pointer = sample_pointer(documents, sample)
        assert not validator_for(document, pointer).is_valid(sample["value"]), (
            f"{pointer} accepts {sample['value']!r}, which the Rust side refused"
        )


def test_openapi_document_is_valid_openapi_3_1(openapi):
    assert get_spec_version(openapi) == versions.OPENAPIV31
    validate(openapi)


def test_openapi_lists_external_operations_only(openapi, documents):
    expected = {
        op["bindings"]["http_path"]
        for document in documents.values()
        for op in document["operations"].values()
        if op["visibility"] == "external"
    }
    assert set(openapi["paths"]) == expected


def test_rust_error_bodies_match_an_openapi_response_for_their_code(openapi, samples):
    uri = "https://schemas.alknet.invalid/openapi.json"
    registry = Registry().with_resource(uri, Resource.from_contents(openapi, DRAFT202012))
    bodies = [s for s in samples if s["side"] == "error_body"]
    assert {b["code"] for b in bodies} >= {"INVALID_INPUT", "UNAUTHENTICATED", "NOT_FOUND", "EMPTY_TEXT"}
    for body in bodies:
        path = f"/v1/{body['service']}/{body['operation']}"
        if path not in openapi["paths"]:
            assert body["code"] == "NOT_FOUND", body
            # An unknown operation's 404 has the shape every path declares.
            path = next(iter(openapi["paths"]))
        responses = openapi["paths"][path]["post"]["responses"]
        matching = []
        for status, response in responses.items():
            content = response.get("content", {}).get("application/json")
            if status == "200" or content is None:
                continue
            pointer = "/".join(
                p.replace("~", "~0").replace("/", "~1")
                for p in ("paths", path, "post", "responses", status, "content", "application/json", "schema")
            )
            validator = Draft202012Validator({"$ref": f"{uri}#/{pointer}"}, registry=registry)
            if validator.is_valid(body["value"]):
                matching.append(status)
        assert matching, f"no response of {path} describes {body['value']!r}"
