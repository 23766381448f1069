"""GET /events wire shape per API version, content negotiation and framing."""

from __future__ import annotations

import json

import pytest

from pymoby.api.types.events import (
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_JSON_LINES,
    MEDIA_TYPE_JSON_SEQUENCE,
    MEDIA_TYPE_NDJSON,
    Action,
    Actor,
    EventType,
    Message,
    decode_event,
    encode_event,
    event_visible,
    events_content_type,
    frame_event,
)
from pymoby.api.versions import ApiVersion

V124 = ApiVersion(1, 24)
V145 = ApiVersion(1, 45)
V146 = ApiVersion(1, 46)
V151 = ApiVersion(1, 51)
V152 = ApiVersion(1, 52)

CONTAINER_START = Message(
    type=EventType.CONTAINER,
    action=Action.START,
    actor=Actor(id="c0ffee", attributes={"name": "web", "image": "busybox", "a": "1"}),
    scope="local",
    time=1_700_000_000,
    time_nano=1_700_000_000_123_456_789,
)


class TestEncode:
    def test_current_shape(self) -> None:
        data = encode_event(CONTAINER_START, V152)
        assert data == (
            b'{"Type":"container","Action":"start","Actor":{"ID":"c0ffee",'
            b'"Attributes":{"a":"1","image":"busybox","name":"web"}},"scope":"local",'
            b'"time":1700000000,"timeNano":1700000000123456789}'
        )
        assert not data.endswith(b"\n")

    def test_legacy_container_fields_before_152(self) -> None:
        doc = json.loads(encode_event(CONTAINER_START, V151))
        assert doc["status"] == "start"
        assert doc["id"] == "c0ffee"
        assert doc["from"] == "busybox"
        assert doc["Action"] == "start"
        assert list(doc)[:3] == ["status", "id", "from"]

    def test_legacy_from_is_present_even_without_image(self) -> None:
        msg = Message(type="container", action="die", actor=Actor(id="c1"))
        doc = json.loads(encode_event(msg, V124))
        assert doc == {
            "status": "die",
            "id": "c1",
            "from": "",
            "Type": "container",
            "Action": "die",
            "Actor": {"ID": "c1", "Attributes": {}},
        }

    def test_legacy_image_fields(self) -> None:
        msg = Message(type="image", action="pull", actor=Actor(id="busybox:latest"))
        doc = json.loads(encode_event(msg, V151))
        assert doc["status"] == "pull"
        assert doc["id"] == "busybox:latest"
        assert "from" not in doc

    def test_other_types_have_no_legacy_fields(self) -> None:
        msg = Message(type="network", action="connect", actor=Actor(id="n1"), scope="local")
        assert encode_event(msg, V124) == encode_event(msg, V152)
        assert "status" not in json.loads(encode_event(msg, V124))

    def test_empty_scope_and_zero_times_are_omitted(self) -> None:
        msg = Message(type="daemon", action="reload", actor=Actor(id="ENGINE"))
        assert encode_event(msg, V152) == (
            b'{"Type":"daemon","Action":"reload","Actor":{"ID":"ENGINE","Attributes":{}}}'
        )

    def test_html_characters_escaped_like_go(self) -> None:
        msg = Message(
            type="container",
            action="exec_start: sh -c 'a > b && c < d'",
            actor=Actor(id="x", attributes={"k": "\u2028"}),
        )
        data = encode_event(msg, V152)
        assert b"\\u003e" in data
        assert b"\\u0026\\u0026" in data
        assert b"\\u003c" in data
        assert b"\\u2028" in data
        assert json.loads(data)["Action"] == "exec_start: sh -c 'a > b && c < d'"

    @pytest.mark.parametrize("version", [V124, V151, V152])
    def test_decode_round_trip(self, version: ApiVersion) -> None:
        assert decode_event(encode_event(CONTAINER_START, version)) == CONTAINER_START


class TestVisible:
    def test_image_create_hidden_before_146(self) -> None:
        create = Message(type="image", action="create", actor=Actor(id="sha256:1"))
        assert not event_visible(create, V145)
        assert event_visible(create, V146)
        assert event_visible(CONTAINER_START, V124)
        pull = Message(type="image", action="pull", actor=Actor(id="busybox"))
        assert event_visible(pull, V145)


class TestContentType:
    def test_default_per_version(self) -> None:
        assert events_content_type(V151) == MEDIA_TYPE_JSON
        assert events_content_type(V124) == MEDIA_TYPE_JSON
        assert events_content_type(V152) == MEDIA_TYPE_JSON_LINES

    @pytest.mark.parametrize("accept", ["", "*/*", "application/*", "application/json"])
    def test_wildcards_and_plain_json_keep_the_default(self, accept: str) -> None:
        assert events_content_type(V151, accept) == MEDIA_TYPE_JSON
        assert events_content_type(V152, accept) == MEDIA_TYPE_JSON_LINES

    @pytest.mark.parametrize(
        "accept, expected",
        [
            ("application/json-seq", MEDIA_TYPE_JSON_SEQUENCE),
            ("application/x-ndjson", MEDIA_TYPE_NDJSON),
            ("application/jsonl", MEDIA_TYPE_JSON_LINES),
            # the Go client (docker 29) sends two Accept headers; equal q -> server order wins
            (["application/json-seq", "application/x-ndjson"], MEDIA_TYPE_NDJSON),
            ("application/json-seq, application/x-ndjson", MEDIA_TYPE_NDJSON),
            ("application/x-ndjson;q=0.4, application/json-seq;q=0.5", MEDIA_TYPE_JSON_SEQUENCE),
            ("text/html, application/json-seq", MEDIA_TYPE_JSON_SEQUENCE),
            ("*/*;q=0.8, application/json-seq", MEDIA_TYPE_JSON_SEQUENCE),
        ],
    )
    def test_explicit_accept(self, accept: str | list[str], expected: str) -> None:
        assert events_content_type(V151, accept) == expected
        assert events_content_type(V152, accept) == expected

    def test_q_zero_is_refused(self) -> None:
        assert events_content_type(V151, "application/json-seq;q=0") == MEDIA_TYPE_JSON

    def test_other_parameters_end_the_header_value(self) -> None:
        # gddo's ParseAccept gives up on a header value at a parameter other than q
        accept = "text/html;charset=utf-8, application/json-seq"
        assert events_content_type(V151, accept) == MEDIA_TYPE_JSON
        lines = ["text/html;charset=utf-8", "application/json-seq"]
        assert events_content_type(V151, lines) == MEDIA_TYPE_JSON_SEQUENCE


class TestFrame:
    def test_json_seq(self) -> None:
        assert frame_event(b"{}", MEDIA_TYPE_JSON_SEQUENCE) == b"\x1e{}\n"

    @pytest.mark.parametrize(
        "content_type", [MEDIA_TYPE_JSON, MEDIA_TYPE_JSON_LINES, MEDIA_TYPE_NDJSON]
    )
    def test_lines(self, content_type: str) -> None:
        assert frame_event(b"{}", content_type) == b"{}\n"
