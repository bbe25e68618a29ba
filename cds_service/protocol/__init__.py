"""CDS Hooks on HTTP: requests (schemas, body limits, authentication), discovery, routing,
feedback, errors as OperationOutcome, CORS, the feedback store. Blueprints are registered by
``create_app``; the modules are imported there, not here (``fhir`` must not reach them)."""

from cds_service.protocol.schemas import request_schema, validate

__all__ = ["request_schema", "validate"]
