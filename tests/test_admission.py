"""Work slots (``cds_service.admission``): how many calls of a served worker compute at once
(``MYOCDS_COMPUTE_SLOTS``), and that a call gives its slot back while it waits on another server
for long: a database connection being opened, an issuer's JWKS endpoint (fhirServer:
tests/commands/test_front.py, on a real server with a hanging FHIR server), but not for a short
round trip on an open connection."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import responses
from sqlalchemy import event

from cds_service.admission import WorkSlots, admitted, call_arrival, waiting
from cds_service.commands.front import BufferedWsgi
from cds_service.protocol.jwks import JwksCache
from cds_service.protocol.replay import RedisReplayGuard
from cds_service.protocol.store import Store
from cds_service.settings import Settings
from tests.support.concurrency import all_at_once
from tests.support.records import issued_card
from tests.support.signing import JKU, SigningKey


class CountingSlots(threading.BoundedSemaphore):
    """One work slot that counts how often it was given back."""

    def __init__(self) -> None:
        super().__init__(1)
        self.released = 0

    def release(self, n: int = 1) -> None:
        self.released += n
        super().release(n)

    def free(self) -> bool:
        """Is the slot free now (another call could take it)? Leaves it as it was."""
        if self.acquire(blocking=False):
            super().release()
            return True
        return False


def test_waiting_gives_the_slot_back_once_even_nested_and_takes_it_again() -> None:
    slots = CountingSlots()
    assert call_arrival() is None  # not admitted: the Flask test client, the CLI
    with admitted(12.5, slots):
        assert call_arrival() == 12.5
        assert not slots.free()
        with waiting():
            assert slots.free()  # another call may compute meanwhile
            with waiting():  # e.g. the store, inside a wait that already gave the slot back
                assert slots.free()
            assert slots.free()
        assert not slots.free()  # taken again to go on
    assert call_arrival() is None
    assert slots.free() and slots.released == 2  # once by waiting, once at the end
    with waiting():  # outside a served call: nothing to give back
        pass


def test_the_front_end_runs_as_many_calls_at_once_as_there_are_compute_slots() -> None:
    inside = 0
    most = 0
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)  # computing
        with lock:
            inside -= 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    def most_at_once(compute_slots: int) -> int:
        nonlocal most
        most = 0
        front = BufferedWsgi(app, Settings().with_overrides(threads=8, compute_slots=compute_slots))
        scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}

        async def one() -> None:
            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                pass

            await front(scope, receive, send)

        async def six() -> None:
            await asyncio.gather(*(one() for _ in range(6)))

        try:
            asyncio.run(six())
        finally:
            front.executor().shutdown()
        return most

    assert most_at_once(1) == 1  # the default: one call computes at a time
    assert most_at_once(3) == 3


class _Pool:
    """A thread pool that counts the calls started on a thread of their own."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=8)
        self.started = 0

    def submit(self, fn: Any) -> Any:
        self.started += 1
        return self.executor.submit(fn)


def test_a_finishing_call_runs_the_queued_ones_on_its_own_thread() -> None:
    """With the slot taken, calls queue without a thread; the thread of the call that finishes
    runs them, in order, still holding the slot: no other thread is woken to take it over."""
    pool = _Pool()
    slots = WorkSlots(1, pool.submit)
    release_first = threading.Event()
    ran: list[tuple[str, int, float | None]] = []
    done = threading.Event()

    def call(name: str, block: bool = False) -> Any:
        def run() -> None:
            if block:
                release_first.wait(10)
            ran.append((name, threading.get_ident(), call_arrival()))
            if name == "e":
                done.set()

        return run

    try:
        slots.run(1.0, call("a", block=True))
        for arrival, name in enumerate("bcde", start=2):
            slots.run(float(arrival), call(name))
        assert pool.started == 1  # only the first call needed a thread
        release_first.set()
        assert done.wait(10)
        assert [name for name, _, _ in ran] == list("abcde")
        assert len({thread for _, thread, _ in ran}) == 1
        assert [arrival for _, _, arrival in ran] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert pool.started == 1
        slots.run(6.0, call("f"))  # the slot is free again: a thread of its own
        assert pool.started == 2
    finally:
        pool.executor.shutdown(wait=True)


def test_a_call_back_from_waiting_goes_before_the_queued_calls() -> None:
    """A waits on another server without its slot: B, queued, starts on another thread. A's
    answer comes in while B computes and C is queued: A gets the slot when B is done, then C."""
    pool = _Pool()
    slots = WorkSlots(1, pool.submit)
    order: list[str] = []
    a_waiting, a_answered, b_running, b_go, c_done = (threading.Event() for _ in range(5))

    def a() -> None:
        order.append("a starts")
        with waiting():
            a_waiting.set()
            a_answered.wait(10)  # the other server answers
        order.append("a goes on")

    def b() -> None:
        order.append("b starts")
        b_running.set()
        b_go.wait(10)
        order.append("b ends")

    def c() -> None:
        order.append("c")
        c_done.set()

    try:
        slots.run(0.0, a)
        assert a_waiting.wait(10)
        slots.run(0.0, b)
        assert b_running.wait(10)  # B computes while A waits
        slots.run(0.0, c)
        a_answered.set()
        time.sleep(0.1)  # A is back, and waits for the slot
        assert order == ["a starts", "b starts"]
        b_go.set()
        assert c_done.wait(10)
        assert order == ["a starts", "b starts", "b ends", "a goes on", "c"]
        assert pool.started == 2  # A's thread, and B's when A gave its slot back
    finally:
        pool.executor.shutdown(wait=True)


def test_a_queued_call_that_raises_does_not_keep_the_slot() -> None:
    pool = _Pool()
    slots = WorkSlots(1, pool.submit)
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("a defect in the glue")

    try:
        slots.run(0.0, broken)
        slots.run(0.0, done.set)
        assert done.wait(10)
    finally:
        pool.executor.shutdown(wait=True)


def test_the_store_opens_a_connection_without_a_slot_and_keeps_it_for_a_statement(
    store_url: str,
) -> None:
    store = Store(store_url)
    try:
        store.ensure_schema()
        store.engine.dispose()  # no open connection left: the next call opens one
        opened: list[int] = []
        event.listen(store.engine, "connect", lambda *_: opened.append(1))
        slots = CountingSlots()
        with admitted(0.0, slots):
            store.record_cards([issued_card()])
            assert opened == [1] and slots.released == 1  # given back while connecting
            assert not slots.free()  # and taken again to finish the call
            store.record_cards([issued_card()])
            assert opened == [1] and slots.released == 1  # a pooled connection: kept
    finally:
        store.dispose()


def test_a_jwks_fetch_waits_without_a_slot_and_a_known_key_keeps_it() -> None:
    key = SigningKey.generate("ES384")
    slots = CountingSlots()
    free_while_fetching: list[bool] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        free_while_fetching.append(slots.free())
        return 200, {}, json.dumps(key.jwks())

    cache = JwksCache()
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, JKU, callback=answer)
        with admitted(0.0, slots):
            assert cache.key(JKU, key.kid) == key.jwk
            assert free_while_fetching == [True] and slots.released == 1
            assert cache.key(JKU, key.kid) == key.jwk  # known and fresh
            assert slots.released == 1  # not given back: nothing to wait for


def test_calls_waiting_for_the_same_key_set_with_one_slot_do_not_deadlock() -> None:
    """The second call waits for the first call's fetch, which needs a slot to finish: it waits
    inside ``waiting`` (without its slot), so the first one gets the slot back."""
    key = SigningKey.generate("ES384")
    slots = threading.BoundedSemaphore(1)

    def slow(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.2)
        return 200, {}, json.dumps(key.jwks())

    cache = JwksCache()

    def call() -> Any:
        with admitted(0.0, slots):
            return cache.key(JKU, key.kid)

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, JKU, callback=slow)
        assert all_at_once([call, call, call]) == [key.jwk] * 3
        assert len(mock.calls) == 1


def test_queued_calls_waiting_for_the_same_key_set_do_not_deadlock() -> None:
    """The same, with the served worker's queue (``WorkSlots``, one slot): the second and third
    calls run while the first fetches, then wait inside ``waiting`` for its fetch."""
    key = SigningKey.generate("ES384")

    def slow(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.2)
        return 200, {}, json.dumps(key.jwks())

    cache = JwksCache()
    pool = _Pool()
    slots = WorkSlots(1, pool.submit)
    got: list[Any] = []
    all_done = threading.Semaphore(0)

    def call() -> None:
        got.append(cache.key(JKU, key.kid))
        all_done.release()

    try:
        with responses.RequestsMock() as mock:
            mock.add_callback(responses.GET, JKU, callback=slow)
            for _ in range(3):
                slots.run(0.0, call)
            for _ in range(3):
                assert all_done.acquire(timeout=10)
            assert got == [key.jwk] * 3
            assert len(mock.calls) == 1
    finally:
        pool.executor.shutdown(wait=True)


def test_a_redis_command_keeps_the_slot(redis_url: str) -> None:
    guard = RedisReplayGuard(redis_url)
    slots = CountingSlots()
    with admitted(0.0, slots):
        assert guard.first_use("https://issuer.example", uuid.uuid4().hex, 60)
        assert slots.released == 0 and not slots.free()
