"""protocol.body: JSON depth measured without parsing, strict JSON."""

from __future__ import annotations

import json
import time

import pytest

from cds_service.errors import BadRequest
from cds_service.protocol.body import is_json_media_type, json_depth, parse_json


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('"just a string"', 0),
        ("42", 0),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "[[[[{{{{"}', 1),
        ('{"a": "quote \\" then [[[["}', 1),
        ('{"a": "backslash \\\\", "b": [[]]}', 3),
        ('[{}, {}, [{}]]', 3),
    ],
)
def test_json_depth(text, depth):
    json.loads(text)  # every case is valid JSON
    assert json_depth(text) == depth


def test_depth_scan_is_linear_on_large_bodies():
    text = json.dumps({"entry": [{"resource": {"id": "x" * 50, "v": [1, 2, 3]}}] * 40_000})
    started = time.perf_counter()
    assert json_depth(text) == 5
    assert time.perf_counter() - started < 5.0  # ~3 MB in ~0.1 s; quadratic would take minutes


def test_parse_json_refuses_depth_over_the_limit():
    with pytest.raises(BadRequest, match="deeper than 3"):
        parse_json(b'{"a": {"b": {"c": {}}}}', max_depth=3)
    assert parse_json(b'{"a": {"b": {}}}', max_depth=3) == {"a": {"b": {}}}


@pytest.mark.parametrize("raw", [b"[Infinity]", b"[-Infinity]", b"{\"a\": NaN}"])
def test_non_standard_numbers_are_refused(raw):
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_json(raw, max_depth=64)


def test_huge_integer_literal_is_400_not_500():
    with pytest.raises(BadRequest):
        parse_json(b"[" + b"9" * 10_000 + b"]", max_depth=64)


def test_byte_order_mark_is_ignored():
    assert parse_json("\ufeff{\"a\": 1}".encode(), max_depth=64) == {"a": 1}


@pytest.mark.parametrize(
    ("mimetype", "is_json"),
    [("application/json", True), ("application/fhir+json", True), ("APPLICATION/JSON", True),
     ("text/json", False), ("application/jsonp", False), ("text/plain", False), ("", False)],
)
def test_json_media_types(mimetype, is_json):
    assert is_json_media_type(mimetype) is is_json
