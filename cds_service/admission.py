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

How a slot passes from call to call (``WorkSlots``): a call that finds every slot taken is
queued without a thread, and the thread of a call that finishes runs the next queued call
itself, still holding the slot. Handing the slot to another thread blocked on a semaphore
(before) woke that thread while this one still held the GIL: the two then traded the GIL and
the processor for every call, measured at +0.55 ms of worker CPU per call and 16% fewer calls
per second at saturation (BENCHMARKS.md, issue 14, sixth pass). A thread is woken only when a
call gives its slot back to wait (``waiting``): the next queued call starts on another thread,
and the waiting call, once its answer is in, takes the next free slot before any queued call.

Outside a served worker (the Flask test client, the CLI, the benchmark's in-process calls) there
is no admission: ``waiting`` does nothing and ``call_arrival`` is ``None``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("myocds.admission")


class Slots(Protocol):
    """Work slots a call takes (``acquire``, blocking) and gives back (``release``):
    ``WorkSlots``, or any semaphore."""

    def acquire(self) -> bool | None: ...

    def release(self) -> None: ...


@dataclass
class _Admission:
    arrival: float  # time.monotonic() when the request was read in full
    slots: Slots
    holding: bool = True  # False while the call waits on another server


_call = threading.local()


def call_arrival() -> float | None:
    """When the call this thread runs arrived (``time.monotonic()``), if a front end said so."""
    admission: _Admission | None = getattr(_call, "admission", None)
    return admission.arrival if admission is not None else None


@contextmanager
def admitted(arrival: float, slots: Slots) -> Iterator[None]:
    """Run one call on this thread holding a work slot (waits for one)."""
    slots.acquire()
    with _holding(arrival, slots) as admission:
        try:
            yield
        finally:
            if admission.holding:
                slots.release()


@contextmanager
def _holding(arrival: float, slots: Slots) -> Iterator[_Admission]:
    """This thread runs a call that holds one of ``slots`` (already taken)."""
    admission = _Admission(arrival, slots)
    _call.admission = admission
    try:
        yield admission
    finally:
        _call.admission = None


class WorkSlots:
    """A served worker's ``count`` work slots, and its calls queued for one.

    ``run`` queues a call; a call starts on a thread of ``start`` (a pool's submit) only when a
    slot is free, else it waits in the queue, holding no thread, until the thread of a call
    that finishes runs it next. A call that gives its slot back to wait on another server
    (``waiting``: ``release``, then ``acquire``) lets the next queued call start on another
    thread, and gets the next slot that comes free, before any queued call.
    """

    def __init__(self, count: int, start: Callable[[Callable[[], None]], object]) -> None:
        if count < 1:
            raise ValueError("at least one work slot")
        self._start = start
        self._lock = threading.Lock()
        self._free = count
        self._starting = 0  # threads asked to start a queued call, not started yet
        self._queued: deque[tuple[float, Callable[[], None]]] = deque()
        # Calls back from waiting on another server, each blocked on its own gate until a slot
        # is handed to it.
        self._resuming: deque[threading.Lock] = deque()

    def run(self, arrival: float, call: Callable[[], None]) -> None:
        """Run ``call`` holding a slot: now, on a thread of its own, if one is free; else after
        the calls queued before it, on the thread of a call that finishes. ``arrival`` is the
        request's (``call_arrival``). A ``call`` that raises is logged, and the slot moves on."""
        with self._lock:
            self._queued.append((arrival, call))
            start = self._claim_start()
        if start:
            self._start(self._drain)

    def _claim_start(self) -> bool:
        """(With the lock held.) Should a thread start on the queue? Yes when a call is queued
        and a slot is free that no thread already on its way will take."""
        start = bool(self._queued) and self._free > self._starting
        if start:
            self._starting += 1
        return start

    def _drain(self) -> None:
        """On a pool thread: take a free slot and run queued calls until none is left."""
        with self._lock:
            self._starting -= 1
            if not self._free or not self._queued:
                return  # taken meanwhile by a call back from waiting, which runs the queue
            self._free -= 1
            arrival, call = self._queued.popleft()
        while True:
            with _holding(arrival, self):
                try:
                    call()
                except Exception:  # a defect in the caller's glue: the slot still moves on
                    log.exception("a queued call failed outside its error handling")
            with self._lock:
                if self._resuming:
                    self._resuming.popleft().release()  # the slot passes to that call
                    return
                if not self._queued:
                    self._free += 1
                    return
                arrival, call = self._queued.popleft()

    def release(self) -> None:
        """A call gives its slot back to wait (``waiting``)."""
        with self._lock:
            if self._resuming:
                self._resuming.popleft().release()
                return
            self._free += 1
            start = self._claim_start()
        if start:
            self._start(self._drain)

    def acquire(self) -> bool:
        """A call back from waiting takes a slot again (blocks until it has one)."""
        with self._lock:
            if self._free:
                self._free -= 1
                return True
            gate = threading.Lock()
            gate.acquire()
            self._resuming.append(gate)
        gate.acquire()  # released by the call that hands its slot over
        return True


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
