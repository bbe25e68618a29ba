"""protocol.body: JSON depth measured without parsing, strict JSON."""

from __future__ import annotations

import json
import random
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
        ('{"a": "\\\\\\"[[", "b": ["\\\\"]}', 2),
        ('{"a": "\\u005b\\u007b", "b": "ü€𝄞[", "c": [{"d": "]]]}}}"}]}', 3),
        ('{"\\"[": {"]\\"": []}}', 3),
    ],
)
def test_json_depth(text, depth):
    json.loads(text)  # every case is valid JSON
    assert json_depth(text) == depth
    assert json_depth(text.encode("utf-8")) == depth


def _nesting(value):
    if isinstance(value, dict):
        return 1 + max(map(_nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_nesting, value), default=0)
    return 0


def test_json_depth_agrees_with_the_parsed_nesting():
    # Seeded random documents whose strings hold brackets, quotes, backslashes and non-ASCII.
    rng = random.Random(14)
    pieces = ["[", "]", "{", "}", '"', "\\", "\\\\", 'x"', "é", "\n", "\u2028"]

    def text():
        return "".join(rng.choice(pieces) for _ in range(rng.randrange(6)))

    def document(level):
        roll = rng.random()
        if level > 6 or roll < 0.3:
            return text()
        if roll < 0.65:
            return [document(level + 1) for _ in range(rng.randrange(4))]
        return {f"{text()}{i}": document(level + 1) for i in range(rng.randrange(4))}

    for _ in range(500):
        value = document(0)
        encoded = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        assert json_depth(encoded) == _nesting(value), encoded


def test_json_depth_past_the_pair_deletions():
    # Deeper than the deletions of innermost pairs go (body._PASSES): the running sum measures.
    rng = random.Random(32)
    for depth in (1, 12, 31, 32, 33, 34, 40, 64, 65, 200):
        value: object = rng.choice([[], {}, "[{", 7])
        for _ in range(depth - _nesting(value)):
            value = [value, "]]"] if rng.random() < 0.5 else {"}": value, "x": [1, "{"]}
        encoded = json.dumps(value)
        assert json_depth(encoded) == _nesting(value) >= depth, encoded
        exact: object = "x"
        for level in range(depth):
            exact = [exact, "]"] if level % 2 else {"{": exact}
        assert json_depth(json.dumps(exact)) == depth


@pytest.mark.parametrize(
    ("text", "depth"),
    # Brackets that do not pair up (never valid JSON): the running maximum, as before.
    [("[[[", 3), ("]", -1), ("[]][[", 1), ("[}", 1), ('["]"', 1), ("[" * 100_000, 100_000)],
)
def test_json_depth_of_unpaired_brackets(text, depth):
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


def _same(a, b):
    """Equal values of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        "-0",
        "[-0.0, 0.0, 1.0, 1E2, 1.5e-400, 0.1, 5e-324, 1.7976931348623157e308]",
        "[9223372036854775807, -9223372036854775808, 18446744073709551615]",
        "[9223372036854775808, -9223372036854775809, 18446744073709551616]",
        "123456789012345678901234567890",
        "[1e400, -1e400]",
        '"\\ud800 lone surrogate"',
        '"\\ud83d\\ude00 \\u0000 \\u2028 é"',
        '\ufeff{"bom": true}',
        '{"nested": [[[{"x": [null, true, false]}]]]}',
    ],
)
def test_parse_json_reads_as_the_standard_parser(text):
    # The body is read with orjson where it reads exactly as json.loads; elsewhere (integers
    # outside 64 bits, 1e400, a lone surrogate, which orjson reads otherwise or refuses) with
    # json.loads: the same values and types either way.
    raw = text.encode("utf-8")
    assert _same(parse_json(raw, 64), json.loads(text.removeprefix("\ufeff")))


def test_parse_json_agrees_with_json_loads_on_random_documents():
    rng = random.Random(1401)

    def number():
        roll = rng.random()
        if roll < 0.3:
            return rng.randrange(-(10**rng.randrange(1, 25)), 10**rng.randrange(1, 25))
        if roll < 0.6:
            return rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-30, 30)
        return rng.choice([0, -0.0, 0.5, 1e-7, 123456.789, 2**63, -(2**63) - 1, 2**64])

    def document(level):
        roll = rng.random()
        if level > 5 or roll < 0.4:
            return rng.choice([number(), "é\u2028x", "", None, True, False, number()])
        if roll < 0.7:
            return [document(level + 1) for _ in range(rng.randrange(5))]
        return {f"k{i}": document(level + 1) for i in range(rng.randrange(5))}

    for _ in range(400):
        text = json.dumps(document(0), ensure_ascii=rng.random() < 0.5)
        assert _same(parse_json(text.encode("utf-8"), 64), json.loads(text)), text
