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

from flask import Request

from cds_service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_CHUNK = 64 * 1024

# An escape in a JSON string (RFC 8259 §7): a backslash and the byte after it. Removed first,
# a quote left in the text always opens or closes a string.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# Every byte but brackets and quotes (UTF-8: no byte of a multi-byte character is one of them).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
# Opening brackets +1, closing -1, as signed bytes.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


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

    Linear, and mostly in C: escapes out, every byte but brackets and quotes out, the strings
    (every other piece between quotes) out, then the running sum of +1/-1 per bracket. About
    5x faster than one regex pass over the strings (BENCHMARKS.md, "Profile")."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    brackets = b"".join(raw.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    if not brackets:
        return 0
    return max(accumulate(array("b", brackets.translate(_STEPS))))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
