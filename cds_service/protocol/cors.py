"""CORS for browser-based CDS clients (the CDS Hooks Sandbox): clients.md §1.1.

Preflight ``OPTIONS`` is answered before authentication (a browser never sends credentials on a
preflight); every other response, errors included, carries ``Access-Control-Allow-Origin`` so the
browser lets the client read a 401 or 412 instead of reporting a network failure.
"""

from __future__ import annotations

from flask import Flask, Response, request

from cds_service.settings import Settings

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
MAX_AGE_SECONDS = "7200"  # Chromium's cap; fewer preflights per Sandbox session


def allowed_origin(origins: tuple[str, ...], origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for this request's Origin, or None."""
    if "*" in origins:
        return "*"
    if origin and origin in origins:
        return origin
    return None


# The CDS Hooks Sandbox's origin (clients.md §1.1): allowed whenever its issuer is trusted, so
# MYOCDS_TRUST_SANDBOX=on alone makes the service usable from it.
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"


def install_cors(app: Flask, settings: Settings) -> None:
    origins = settings.cors_origins
    if settings.sandbox_issuer and SANDBOX_ORIGIN not in origins:
        origins = (*origins, SANDBOX_ORIGIN)

    @app.before_request
    def answer_preflight() -> Response | None:
        # Only for paths that exist: an unknown path still answers 404.
        if request.method == "OPTIONS" and request.url_rule is not None:
            response = app.response_class(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
            return response
        return None

    @app.after_request
    def add_allow_origin(response: Response) -> Response:
        value = allowed_origin(origins, request.headers.get("Origin"))
        if value is not None:
            response.headers["Access-Control-Allow-Origin"] = value
        if value != "*":
            # The answer depends on Origin: caches must not hand one origin's answer to another.
            response.vary.add("Origin")
        return response
