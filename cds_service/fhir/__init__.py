"""FHIR data for one hook call: prefetch check, fallback fetch, R4 parsing, medication references.

Entry point: ``cds_service.fhir.gather.gather(service, body, settings, caller) -> FhirData``.
"""

from cds_service.fhir.data import FetchStats, FhirData

__all__ = ["FetchStats", "FhirData"]
