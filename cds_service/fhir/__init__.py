"""FHIR data for one hook call: prefetch check, fallback fetch (both with ``_include`` of the
orders' Medications) through the application's FHIR client and egress policy, liberal reading
with a flaw count, medication references.

Entry point: ``gather(service, body, settings, *, client, egress) -> FhirData``.
"""

from cds_service.fhir.allow import EgressPolicy
from cds_service.fhir.client import FhirClient
from cds_service.fhir.data import FetchStats, FhirData
from cds_service.fhir.gather import gather

__all__ = ["EgressPolicy", "FetchStats", "FhirClient", "FhirData", "gather"]
