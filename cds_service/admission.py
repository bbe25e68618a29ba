"""Which calls of a served worker compute at once: its work slots, and giving one back to wait.

A served worker (``cds_service/commands/front.py``) runs each request on a thread of its pool
only once the thread holds one of the worker's ``MYOCDS_COMPUTE_SLOTS`` *work slots* (one by
default), and stamps the request's arrival time. A call gives its slot back while it waits on
another server for long (``waiting``): fhirServer (the bounded fetch pool of ``fhir.client``),
an issuer's JWKS endpoint (``protocol.jwks``), a feedback database connection being opened or
its schema being migrated (``protocol.store``); it takes a slot again to go on. So a call whose
prefetch is complete never queues behind calls stuck on a slow or hanging FHIR server, and a
worker's processor time goes to the calls that can use it. A short round trip on an open
connection (a statement, a Redis command, each bounded by its timeout) keeps the slot: giving it
back lets the next call start, and this one then waits for that call to finish before it can
go on, which cost more than the round trip saved (measured, BENCHMARKS.md). ``call_arrival``
lets ``gather`` count the hook deadline from the request's arrival, queueing included, not from
the moment it started fetching.

Why one slot: the threads of one Python process never compute at the same time (the GIL). Calls
that all compute take turns every few milliseconds (``sys.getswitchinterval``), and each turn
finds the processor's caches filled with another call's parsed body and record (a realistic call
builds a few MB of objects): the same calls then cost more processor time, and each finishes
later. One at a time, a call runs to its end with its own data at hand (BENCHMARKS.md, issue 14:
the measurement). Several cores are used by several worker processes (``MYOCDS_WORKERS``).
``MYOCDS_THREADS`` is how many calls a worker holds at once: computing, waiting for a slot, or
waiting on another server.

Never wait for a lock while holding a slot that the lock's holder may need back: wait inside
``waiting`` instead (``protocol.jwks`` does, for the fetch of a key set another call started).

Outside a served worker (the Flask test client, the CLI, the benchmark's in-process calls) there
is no admission: ``waiting`` does nothing and ``call_arrival`` is ``None``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class _Admission:
    arrival: float  # time.monotonic() when the request was read in full
    slots: threading.Semaphore
    holding: bool = True  # False while the call waits on another server


_call = threading.local()


def call_arrival() -> float | None:
    """When the call this thread runs arrived (``time.monotonic()``), if a front end said so."""
    admission: _Admission | None = getattr(_call, "admission", None)
    return admission.arrival if admission is not None else None


@contextmanager
def admitted(arrival: float, slots: threading.Semaphore) -> Iterator[None]:
    """Run one call on this thread holding a work slot (waits for one)."""
    slots.acquire()
    admission = _Admission(arrival, slots)
    _call.admission = admission
    try:
        yield
    finally:
        _call.admission = None
        if admission.holding:
            slots.release()


@contextmanager
def waiting() -> Iterator[None]:
    """Give this call's work slot back while it waits on another server; take one again after.
    Nested, or outside a served call, it does nothing more."""
    admission: _Admission | None = getattr(_call, "admission", None)
    if admission is None or not admission.holding:
        yield
        return
    admission.holding = False
    admission.slots.release()
    try:
        yield
    finally:
        admission.slots.acquire()
        admission.holding = True
