"""Demonstration and test support shipped with the service, never on its production path: an
in-memory FHIR server over one patient's record (``search``), used by the try-it pages,
``myocds call`` and the tests to build the prefetch an EHR would send."""

from cds_service.demo.search import UnsupportedSearch, build_prefetch, search

__all__ = ["UnsupportedSearch", "build_prefetch", "search"]
