"""The bulkhead between hook calls that wait on a FHIR server and calls that do not.

A served worker (``cds_service/commands/front.py``) runs each request on a thread only once it
holds one of the worker's ``MYOCDS_THREADS`` *work slots*, and stamps the request's arrival time.
While a call waits on fhirServer (its fallback fetches run on the separate, bounded fetch pool of
``gather``) it gives its slot back (``waiting_on_fhir``), so a call whose prefetch is complete
never queues behind calls stuck on a slow or hanging FHIR server; the waiting call takes a slot
again to finish. ``call_arrival`` lets ``gather`` count the hook deadline from the request's
arrival, queueing included, not from the moment it started fetching.

Outside a served worker (the Flask test client, the CLI, the benchmark's in-process calls) there
is no admission: ``waiting_on_fhir`` does nothing and ``call_arrival`` is ``None``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class _Admission:
    arrival: float  # time.monotonic() when the request was read in full
    slots: threading.Semaphore


_call = threading.local()


def call_arrival() -> float | None:
    """When the call this thread runs arrived (``time.monotonic()``), if a front end said so."""
    admission: _Admission | None = getattr(_call, "admission", None)
    return admission.arrival if admission is not None else None


@contextmanager
def admitted(arrival: float, slots: threading.Semaphore) -> Iterator[None]:
    """Run one call on this thread holding a work slot (waits for one)."""
    slots.acquire()
    _call.admission = _Admission(arrival, slots)
    try:
        yield
    finally:
        _call.admission = None
        slots.release()


@contextmanager
def waiting_on_fhir() -> Iterator[None]:
    """Give this call's work slot back while it waits on fhirServer; take one again after."""
    admission: _Admission | None = getattr(_call, "admission", None)
    if admission is None:
        yield
        return
    admission.slots.release()
    try:
        yield
    finally:
        admission.slots.acquire()
