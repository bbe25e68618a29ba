"""Reading a JSON request body within the limits: media type, size, nesting depth.

Every refusal is a ``MyocdsError`` (415, 413, 400) that ``protocol.errors`` turns into an
OperationOutcome. The body is never echoed back: it may be a whole patient record.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from flask import Request

from cds_service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_CHUNK = 64 * 1024

# A JSON string literal (RFC 8259 §7), unrolled so the regex engine runs linearly.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


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
    # The depth is measured on the text before parsing, so a hostile 100,000-level nesting is
    # refused in linear time instead of reaching the parser's recursion.
    if json_depth(text) > max_depth:
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


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in a JSON text (brackets inside strings ignored)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(accumulate(_STEP[c] for c in brackets))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
