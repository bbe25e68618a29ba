"""Reading a JSON request body within the limits: media type, size, nesting depth.

Every refusal is a ``MyocdsError`` (415, 413, 400) that ``protocol.errors`` turns into an
OperationOutcome. The body is never echoed back: it may be a whole patient record.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

import orjson
from flask import Request

from cds_service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_CHUNK = 64 * 1024

# An escape in a JSON string (RFC 8259 §7): a backslash and the byte after it. Removed first,
# a quote left in the text always opens or closes a string.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# Every byte but brackets and quotes (UTF-8: no byte of a multi-byte character is one of them).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
# Braces as square brackets: the depth counts both kinds alike (a mismatch is the parser's to find).
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
# Opening brackets +1, closing -1, as signed bytes.
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")
# Innermost pairs are deleted at most this many times (a JSON body is rarely nested over ~12
# levels); a deeper or unbalanced text is measured by the running sum instead.
_PASSES = 32
# Every digit as "0", every other byte as a blank: a run of 19 zeros may be an integer literal
# outside 64 bits (or a digit run in a string), which orjson reads as a float (``parse_json``).
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def is_json_media_type(mimetype: str) -> bool:
    """application/json or a +json type (application/fhir+json); parameters already stripped."""
    mimetype = mimetype.lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def read_json_body(request: Request, max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body, or the refusal that says why not."""
    if not is_json_media_type(request.mimetype):
        raise UnsupportedMediaType(
            "the request body must be JSON: send Content-Type: application/json"
        )
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than the limit of {max_bytes} bytes")
    return parse_json(_read_limited(request, max_bytes), max_depth)


def _read_limited(request: Request, max_bytes: int) -> bytes:
    # Enforced while reading as well: a chunked body has no Content-Length to check up front.
    chunks: list[bytes] = []
    size = 0
    stream = request.stream
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(
                f"the request body is larger than the limit of {max_bytes} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, max_depth: int) -> Any:
    """Strict RFC 8259 JSON (UTF-8, no NaN/Infinity) nested at most ``max_depth`` levels."""
    if not raw.strip():
        raise BadRequest("the request body is empty; a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 encoded JSON") from None
    text = text.removeprefix("\ufeff")  # RFC 8259 §8.1: a parser MAY ignore a byte order mark
    # The depth is measured on the bytes before parsing, so a hostile 100,000-level nesting is
    # refused in linear time instead of reaching the parser's recursion.
    if json_depth(raw) > max_depth:
        raise BadRequest(f"the JSON body is nested deeper than {max_depth} levels")
    # orjson reads a body in about half the time ``json.loads`` takes (BENCHMARKS.md, issue 14)
    # and gives the same values, of the same types, for every text both accept, but for an
    # integer outside 64 bits (a float to orjson): a body with a run of 19 digits anywhere is left
    # to ``json.loads``. What orjson refuses goes to ``json.loads`` too, which either reads it as
    # before (a lone surrogate escape, 1e400) or says what is wrong, as it always did.
    if _LONG_DIGIT_RUN not in raw.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise BadRequest(f"the JSON body is nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def json_depth(text: str | bytes) -> int:
    """Deepest nesting of arrays and objects in a JSON text (brackets inside strings ignored).

    Linear, and in C but for a loop of at most ``_PASSES`` turns: escapes out; every byte but
    brackets and quotes out (braces written as square brackets); the strings out (every other
    piece between quotes); then the innermost pairs ``[]`` deleted, all at once, until none is
    left: each deletion takes the leaves off the tree of brackets, so the number of deletions is
    the depth. A text whose brackets do not pair up, or nest deeper than ``_PASSES``, is measured
    by the running sum of +1/-1 per bracket, which gives the same number on balanced brackets
    (its maximum is the depth) and is what was measured before on the others."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    brackets = raw.translate(_ONE_KIND, _NOT_STRUCTURE)
    if b'"' in brackets:
        # Two adjacent quotes enclose nothing (an empty string, or a string's end and the next
        # one's start with no bracket between), and deleting them keeps every other quote's
        # place odd or even: most strings hold no bracket, so most quotes go here, cheaply.
        brackets = brackets.replace(b'""', b"")
        if b'"' in brackets:
            brackets = b"".join(brackets.split(b'"')[::2])
    remaining = brackets
    for depth in range(_PASSES + 1):
        if not remaining:
            return depth
        shorter = remaining.replace(b"[]", b"")
        if len(shorter) == len(remaining):
            break  # no innermost pair left: the brackets do not pair up
        remaining = shorter
    return max(accumulate(array("b", brackets.translate(_STEPS))))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
