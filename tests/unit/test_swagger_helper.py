"""The swagger checker itself: conversion rules on a small spec, then the real API 1.41 spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests import swagger
from tests.swagger import Optional, Swagger

from pymoby.api.versions import ApiVersion

SMALL_SPEC = """
swagger: "2.0"
definitions:
  Thing:
    type: object
    required: [Name]
    properties:
      Name:
        type: string
        format: uuid
        example: "x"
      Count:
        type: integer
        format: int64
      Maybe:
        type: string
        x-nullable: true
      Later:
        type: boolean
      Quiet:
        type: string
        x-omitempty: true
      Kind:
        type: string
        enum: [a, b]
      Child:
        $ref: "#/definitions/Child"
      Tags:
        type: array
        items:
          type: object
          properties:
            Key:
              type: string
      Map:
        type: object
        additionalProperties:
          $ref: "#/definitions/Child"
  Child:
    type: object
    x-nullable: true
    properties:
      ID:
        type: string
  Loop:
    type: object
    properties:
      Next:
        $ref: "#/definitions/Loop"
paths:
  /thing:
    get:
      responses:
        200:
          schema:
            type: object
            title: ThingResponse
            properties:
              Value:
                type: integer
"""

SMALL_OPTIONAL = {
    "Thing": {"Later": Optional("removed in 1.50", since=ApiVersion(1, 50))},
}


@pytest.fixture
def small(tmp_path: Path) -> Swagger:
    path = tmp_path / "swagger.yaml"
    path.write_text(SMALL_SPEC)
    return Swagger(path, optional=SMALL_OPTIONAL, errata=())


def good_thing() -> dict[str, Any]:
    return {
        "Name": "n",
        "Count": 3,
        "Maybe": None,
        "Later": True,
        "Kind": "a",
        "Child": {"ID": "c"},
        "Tags": [{"Key": "k"}],
        "Map": {"x": {"ID": "y"}, "z": None},
    }


def test_good_object_passes(small: Swagger) -> None:
    # `Quiet` (x-omitempty) may be absent; everything else listed must be there.
    small.validate("Thing", good_thing())
    small.validate("#/definitions/Thing", good_thing())


def test_wrong_type_fails_with_path(small: Swagger) -> None:
    obj = good_thing()
    obj["Count"] = "3"
    obj["Tags"] = [{"Key": 1}]
    with pytest.raises(AssertionError) as err:
        small.validate("Thing", obj)
    text = str(err.value)
    assert "$.Count: '3' is not of type 'integer'" in text
    assert "$.Tags[0].Key: 1 is not of type 'string'" in text


def test_missing_listed_property_fails(small: Swagger) -> None:
    obj = good_thing()
    del obj["Count"]
    del obj["Child"]["ID"]
    with pytest.raises(AssertionError) as err:
        small.validate("Thing", obj)
    text = str(err.value)
    assert "$: 'Count' is a required property" in text
    assert "$.Child: 'ID' is a required property" in text
    assert "OPTIONAL" in text


def test_bool_is_not_an_integer(small: Swagger) -> None:
    obj = good_thing()
    obj["Count"] = True
    assert small.problems("Thing", obj) == ["$.Count: True is not of type 'integer'"]


def test_nullability(small: Swagger) -> None:
    obj = good_thing()
    obj["Child"] = None  # the Child definition is x-nullable
    small.validate("Thing", obj)
    obj["Kind"] = None  # not nullable
    assert small.problems("Thing", obj) == [
        "$.Kind: None is not of type 'string'",
        "$.Kind: None is not one of ['a', 'b']",
    ]


def test_enum_and_format(small: Swagger) -> None:
    obj = good_thing()
    obj["Kind"] = "c"
    obj["Name"] = "not-a-uuid"  # format is ignored
    assert small.problems("Thing", obj) == ["$.Kind: 'c' is not one of ['a', 'b']"]


def test_optional_by_version_and_per_call(small: Swagger) -> None:
    obj = good_thing()
    del obj["Later"]
    assert small.problems("Thing", obj) == ["$: 'Later' is a required property"]
    assert small.problems("Thing", obj, api=ApiVersion(1, 50)) == []
    del obj["Count"]
    assert small.problems("Thing", obj, api=ApiVersion(1, 50), optional={"Thing": ["Count"]}) == []


def test_inline_locations_and_response_specs(small: Swagger) -> None:
    obj = good_thing()
    obj["Tags"] = [{}]
    assert small.problems("Thing", obj) == ["$.Tags[0]: 'Key' is a required property"]
    assert small.problems("Thing", obj, optional={"Thing.Tags[]": ["Key"]}) == []
    obj["Map"] = {"x": {}}
    assert small.problems("Thing", obj, optional={"Thing.Tags[]": ["Key"]}) == [
        "$.Map.x: 'ID' is a required property"
    ]
    small.validate("GET /thing", {"Value": 1})
    small.validate("GET /thing 200", {"Value": 1})
    assert small.problems("GET /thing", {}) == ["$: 'Value' is a required property"]
    assert ("ThingResponse", "Value") in small.all_locations()


def test_unknown_specs_and_recursion(small: Swagger) -> None:
    with pytest.raises(KeyError):
        small.schema("Nope")
    with pytest.raises(KeyError):
        small.schema("GET /nope")
    with pytest.raises(ValueError, match="recursive"):
        small.schema("Loop")


def test_missing_spec_file_fails_naming_the_package(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="golang-github-docker-docker-dev"):
        Swagger(tmp_path / "absent.yaml")


def test_the_real_spec_is_installed_and_is_1_41() -> None:
    spec = swagger.default_swagger()
    assert spec.doc["info"]["version"] == "1.41"


def test_optional_table_names_real_properties() -> None:
    assert list(swagger.stale_optional_entries(swagger.default_swagger())) == []


def test_real_definition_detects_a_missing_field() -> None:
    version = {
        "Platform": {"Name": ""},
        "Components": [{"Name": "Engine", "Version": "1"}],
        "Version": "1",
        "ApiVersion": "1.41",
        "MinAPIVersion": "1.24",
        "GitCommit": "abc",
        "Os": "linux",
        "Arch": "amd64",
    }
    swagger.validate("SystemVersion", version)
    swagger.validate("GET /version", version)
    del version["Arch"]
    with pytest.raises(AssertionError, match=r"'Arch' is a required property"):
        swagger.validate("GET /version", version)
    version["Arch"] = 1
    del version["Components"][0]["Version"]
    problems = swagger.default_swagger().problems("SystemVersion", version)
    assert problems == [
        "$.Arch: 1 is not of type 'string'",
        "$.Components[0]: 'Version' is a required property",
    ]


def test_isolation_erratum_accepts_linux_empty_value() -> None:
    schema = swagger.default_swagger().schema("SystemInfo")
    assert "" in schema["properties"]["Isolation"]["enum"]
