"""The OpenAPI 3.1 document of our endpoints, served at ``GET /openapi.json``.

Request and response bodies are described by the very JSON Schemas the service validates with
(``cds_service/schemas/*.json``), bundled into ``components.schemas`` so the document stands
alone: each file's root becomes ``<file>`` and each of its ``$defs`` ``<file>.<def>``, with the
``$ref``s rewritten. Service ids come from ``SERVICES``: nothing is said twice.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Flask, Response, jsonify

from cds_service.services import SERVICES
from cds_service.settings import Settings

# What every error answer of ours is (protocol.errors.operation_outcome): a FHIR R4
# OperationOutcome with at least one issue (CDS Hooks 3.0 "Returning OperationOutcome").
OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "FHIR R4 OperationOutcome: why the request was refused. Never carries patient "
    "data or tokens.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    # http://hl7.org/fhir/issue-type
                    "code": {"type": "string", "pattern": "^[a-z][a-z-]*$"},
                    "diagnostics": {"type": "string", "minLength": 1},
                    "details": {"type": "object"},
                    "expression": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
    },
}

_SCHEMA_FILES = ("common", "request", "response", "feedback", "discovery")

_ERRORS = {
    "400": "Malformed JSON, a CDS Hooks schema violation (the expression names the field), or a "
    "hook this service does not answer.",
    "401": "Missing or invalid bearer JWT (CDS Hooks 2.0 §Security). No detail is given.",
    "404": "No CDS service with this id.",
    "405": "Method not allowed on this endpoint.",
    "412": "The FHIR data needed could not be had: prefetch missing and the fhirServer fetch "
    "failed, or the fhirServer is refused (allow-list, https, private address).",
    "413": "Body larger than the limit, or more resources than the limit.",
    "415": "The body is not JSON (Content-Type must be application/json).",
    "422": "Well-formed JSON whose FHIR content cannot be acted on.",
    "503": "A store this call needs cannot be reached now (the feedback database, or the store "
    "of seen token ids when authentication is on); try again later (Retry-After).",
}


def _bundle_schemas() -> dict[str, Any]:
    from cds_service.protocol.schemas import schema

    components: dict[str, Any] = {}

    def rewrite(node: Any, file: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    target_file, _, pointer = value.partition("#")
                    target = target_file.removesuffix(".json") or file
                    prefix = "/$defs/"
                    name = (
                        f"{target}.{pointer[len(prefix) :]}"
                        if pointer.startswith(prefix)
                        else target
                    )
                    out[key] = f"#/components/schemas/{name}"
                elif key not in ("$id", "$schema", "$defs"):
                    out[key] = rewrite(value, file)
            return out
        if isinstance(node, list):
            return [rewrite(item, file) for item in node]
        return node

    for file in _SCHEMA_FILES:
        document = copy.deepcopy(schema(file))
        for name, definition in document.get("$defs", {}).items():
            components[f"{file}.{name}"] = rewrite(definition, file)
        if file != "common":  # common.json is only a library of $defs
            components[file] = rewrite(document, file)
    components["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
    return components


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {
        code: {"description": _ERRORS[code], "content": _json("OperationOutcome")} for code in codes
    }


def _service_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """One path per declared service (its hooks narrow the request schema), and its feedback."""
    hooks_by_id: dict[str, list[str]] = {}
    titles: dict[str, list[str]] = {}
    for service in SERVICES:
        hooks_by_id.setdefault(service.id, []).append(service.hook)
        titles.setdefault(service.id, []).append(service.title)
    paths: dict[str, Any] = {}
    for service_id, hooks in hooks_by_id.items():
        request_schema = {
            "allOf": [
                {"$ref": "#/components/schemas/request"},
                {"properties": {"hook": {"enum": hooks}}},
            ]
        }
        paths[f"/cds-services/{service_id}"] = {
            "post": {
                "operationId": f"call:{service_id}",
                "summary": "; ".join(titles[service_id]),
                "description": f"Answers the hook(s) {', '.join(hooks)}. Unknown service ids "
                "are 404.",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": request_schema}},
                },
                "responses": {
                    "200": {"description": "Cards (possibly none).", "content": _json("response")},
                    **_errors("400", "401", "404", "405", "412", "413", "415", "422", "503"),
                },
            }
        }
        paths[f"/cds-services/{service_id}/feedback"] = {
            "post": {
                "operationId": f"feedback:{service_id}",
                "summary": "CDS Hooks feedback on cards: accepted or overridden (idempotent)",
                "description": "Each item is stored or refused on its own: a 400 has one issue "
                "per refused item (its expression names it) and says how many were stored.",
                "security": security,
                "requestBody": {"required": True, "content": _json("feedback")},
                "responses": {
                    "200": {
                        "description": "Stored (repeated feedback is stored once).",
                        "content": {
                            "application/json": {"schema": {"type": "object", "maxProperties": 0}}
                        },
                    },
                    **_errors("400", "401", "404", "405", "413", "415", "503"),
                },
            }
        }
    return paths


def openapi_document(settings: Settings) -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"cdsHooksJwt": []}] if settings.auth_required else []
    paths: dict[str, Any] = {
        "/cds-services": {
            "get": {
                "operationId": "discovery",
                "summary": "CDS Hooks discovery: the services, their hooks and prefetch templates",
                "security": security,
                "responses": {
                    "200": {"description": "The services.", "content": _json("discovery")},
                    **_errors("401", "405", "503"),
                },
            }
        },
        **_service_paths(security),
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The process answers.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status"],
                                    "properties": {"status": {"const": "ok"}},
                                }
                            }
                        },
                    },
                    **_errors("405"),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness (the feedback database answers)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The feedback database answers.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status"],
                                    "properties": {"status": {"const": "ready"}},
                                }
                            }
                        },
                    },
                    **_errors("405", "503"),
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "myocds CDS Hooks service",
            "version": "0.1.0",
            "description": "CDS Hooks 2.0 service: statin myopathy (CK), anti-HMGCR testing, "
            "serum IgA before IVIG, IVIG dosing and continuation. Every error is a FHIR "
            "OperationOutcome.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": (settings.public_base_url or "/").rstrip("/") or "/"}],
        "paths": paths,
        "components": {
            "schemas": _bundle_schemas(),
            "securitySchemes": {
                "cdsHooksJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "CDS Hooks 2.0 client JWT: RS/PS/ES 256-512 signed by a trusted "
                    "issuer, aud = the URL called, exp/iat/jti required, jti used once.",
                }
            },
        },
    }
    return document


def install_openapi(app: Flask, settings: Settings) -> None:
    """Register ``GET /openapi.json`` (public: it describes the API, not patient data)."""
    document = openapi_document(settings)
    blueprint = Blueprint("openapi", __name__)

    @blueprint.get("/openapi.json")
    def openapi_json() -> Response:
        return jsonify(document)

    app.register_blueprint(blueprint)
