"""alknet's schemas, checked by independent Python tools.

- every service document's `schema` resource (and every schema inside it) passes the JSON
  Schema 2020-12 meta-schema (`jsonschema`), and every operation's parts are the documented
  `{"$ref": "{$id}#/$defs/{operation}.{part}"}`;
- real payloads from the Rust side (`cargo run -p alknet --example interop_samples`)
  validate against their schemas, and inputs the Rust side refused do not, each through the
  recipe docs/schemas.md gives (the resource in a `referencing` registry, the part's `$ref`);
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


def parts(document):
    """Every schema reference in a service document's metadata, with what it is."""
    for op_name, op in document["operations"].items():
        for side in ("input", "output", "item"):
            if side in op:
                yield f"{op_name}.{side}", op[side]
        for code, error in op["errors"].items():
            if "details" in error:
                yield f"{op_name}.error.{code}", error["details"]


def validator_for(document, reference):
    """The documented recipe: register the document's `schema` resource under its `$id`
    and validate with the operation's `{"$ref": ...}` as it stands."""
    resource = document["schema"]
    registry = Registry().with_resource(resource["$id"], Resource.from_contents(resource))
    return Draft202012Validator(reference, registry=registry)


@pytest.mark.parametrize("path", SERVICE_DOCUMENTS, ids=lambda p: p.name)
def test_each_service_document_holds_one_2020_12_resource(path):
    document = load(path)
    assert "$schema" not in document, "the document itself is metadata, not a schema"
    resource = document["schema"]
    assert resource["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert resource["$id"] == f"https://alk.dev/schemas/services/{document['namespace']}.json"
    Draft202012Validator.check_schema(resource)
    for name, schema in resource["$defs"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as err:  # name the schema that failed
            raise AssertionError(f"{path.name}#/schema/$defs/{name}: {err}") from err
    titles = [s["title"] for s in resource["$defs"].values() if "title" in s]
    assert resource["title"] not in titles, "the root's title is no type's"


def test_every_part_is_the_documented_reference_and_resolves(documents):
    for document in documents.values():
        resource = document["schema"]
        for part, reference in parts(document):
            assert reference == {"$ref": f"{resource['$id']}#/$defs/{part}"}
            assert part in resource["$defs"], part
            # Walking a document with the validator resolves every reference it reaches.
            list(validator_for(document, reference).iter_errors(None))


def sample_reference(documents, sample):
    document = documents[sample["service"]]
    op = document["operations"][sample["operation"]]
    if sample["side"] == "error_details":
        return document, op["errors"][sample["code"]]["details"]
    assert sample["side"] in op, f"{sample['operation']} has no {sample['side']} schema"
    return document, op[sample["side"]]


def test_rust_payloads_validate_against_their_schemas(documents, samples):
    checked = 0
    for sample in samples:
        if sample["side"] == "error_body" or not sample["valid"]:
            continue
        document, reference = sample_reference(documents, sample)
        errors = list(validator_for(document, reference).iter_errors(sample["value"]))
        assert not errors, f"{reference}: {sample['value']!r}: {errors[0].message}"
        checked += 1
    sides = {s["side"] for s in samples if s["valid"]}
    assert {"input", "output", "item", "error_details"} <= sides, sides
    assert checked >= 10


def test_inputs_the_rust_side_refused_fail_their_schemas(documents, samples):
    refused = [s for s in samples if s["side"] == "input" and not s["valid"]]
    assert refused, "the Rust side refused no input"
    for sample in refused:
        document, reference = sample_reference(documents, sample)
        assert not validator_for(document, reference).is_valid(sample["value"]), (
            f"{reference} accepts {sample['value']!r}, which the Rust side refused"
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
