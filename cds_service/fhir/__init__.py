"""FHIR data for one hook call: prefetch check, fallback fetch (both with ``_include`` of the
orders' Medications), liberal reading with a flaw count, medication references.

Entry point: ``cds_service.fhir.gather.gather(service, body, settings, caller) -> FhirData``.
"""

from cds_service.fhir.data import FetchStats, FhirData

__all__ = ["FetchStats", "FhirData"]
