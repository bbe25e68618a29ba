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
from typing import Any

import responses
from sqlalchemy import event

from cds_service.admission import admitted, call_arrival, waiting
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


def test_a_redis_command_keeps_the_slot(redis_url: str) -> None:
    guard = RedisReplayGuard(redis_url)
    slots = CountingSlots()
    with admitted(0.0, slots):
        assert guard.first_use("https://issuer.example", uuid.uuid4().hex, 60)
        assert slots.released == 0 and not slots.free()
