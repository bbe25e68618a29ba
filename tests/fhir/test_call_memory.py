"""One memory budget per hook call (MYOCDS_FHIR_CALL_BYTES), over every fallback key, counted
while the bodies stream in: a FHIR server sending large pages on every key cannot make one call
hold more than the budget, and the call stops reading once it is passed (issue 12, point 4)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.errors import DataUnavailable
from cds_service.fhir.gather import gather
from cds_service.settings import Settings
from tests.fhir.conftest import declared_service
from tests.support.fhir_server import FhirTestServer

REVIEW = declared_service("myopathy-review", "patient-view")  # five search keys and a read
SEARCHES = "?patient="  # the fault hits the five searches, not the Patient read
MIB = 1024 * 1024
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    server = FhirTestServer().start()
    yield server
    server.stop()


def _settings(server: FhirTestServer, call_bytes: int) -> Settings:
    return Settings().with_overrides(
        auth="off",
        fhir_allow=(server.base_url,),
        fhir_timeout_seconds=10.0,
        hook_deadline_seconds=20.0,
        fhir_call_bytes=call_bytes,
    )


def _body(server: FhirTestServer) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "h-1",
        "fhirServer": server.base_url,
        "context": {"patientId": "p1", "userId": "Practitioner/u"},
        "prefetch": {"patient": PATIENT},
    }


def test_pages_each_under_the_page_cap_fail_together_past_the_call_budget(
    server: FhirTestServer,
) -> None:
    # Five 3 MiB pages: each is far below the 32 MiB cap of one response, together 15 MiB.
    server.add_fault("large", match=SEARCHES, large_bytes=3 * MIB)
    with pytest.raises(DataUnavailable) as info:
        gather(REVIEW, _body(server), _settings(server, call_bytes=8 * MIB))
    assert info.value.status == 412
    assert "MYOCDS_FHIR_CALL_BYTES" in info.value.message
    assert info.value.message.startswith("prefetch key '")


def test_the_same_pages_within_the_budget_are_read(server: FhirTestServer) -> None:
    server.add_fault("large", match=SEARCHES, large_bytes=3 * MIB)
    data = gather(REVIEW, _body(server), _settings(server, call_bytes=16 * MIB))
    assert data.stats.fetches == 5
    assert {r["resourceType"] for r in data.resources} == {"Patient"}


def test_reading_stops_once_the_budget_is_passed(server: FhirTestServer) -> None:
    # One key streams 256 MiB: the call reads about its 1 MiB budget, hangs up, and the server
    # cannot write much more than what the socket buffers hold.
    fault = server.add_fault("large", match="Observation?", large_bytes=256 * MIB)
    with pytest.raises(DataUnavailable) as info:
        gather(REVIEW, _body(server), _settings(server, call_bytes=1 * MIB))
    # The key that crossed the budget fails (the stream, or a small page read after it).
    assert "MYOCDS_FHIR_CALL_BYTES" in info.value.message
    assert server.wait_until_idle(timeout=5.0)
    assert fault.sent < 64 * MIB, f"{fault.sent / MIB:.0f} MiB were sent"


def test_an_announced_length_past_the_budget_is_refused_before_reading(
    server: FhirTestServer,
) -> None:
    fault = server.add_fault(
        "large", match="Condition?", large_bytes=24 * MIB, announce_length=True
    )
    with pytest.raises(DataUnavailable) as info:
        gather(REVIEW, _body(server), _settings(server, call_bytes=2 * MIB))
    assert "'conditions'" in info.value.message
    assert "MYOCDS_FHIR_CALL_BYTES" in info.value.message
    assert server.wait_until_idle(timeout=5.0)
    assert fault.sent < 20 * MIB  # under the 32 MiB page cap: only the budget refused it


def test_the_budget_is_a_setting() -> None:
    assert Settings.from_env({}).fhir_call_bytes == 16 * MIB
    assert Settings.from_env({"MYOCDS_FHIR_CALL_BYTES": "1048576"}).fhir_call_bytes == MIB


def test_a_failed_call_gives_its_buffers_back_without_waiting_for_the_garbage_collector(
    server: FhirTestServer,
) -> None:
    # The 412's traceback keeps the reading frames alive until the cyclic collector runs; their
    # buffers must not stay with them (a worker kept 500 MB after four such calls).
    server.add_fault("large", match="Observation?", large_bytes=64 * MIB)
    settings = _settings(server, call_bytes=8 * MIB)
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(DataUnavailable) as info:
            gather(REVIEW, _body(server), settings)
        held = tracemalloc.get_traced_memory()[0] - before
        assert "MYOCDS_FHIR_CALL_BYTES" in info.value.message
        assert info.value.__traceback__ is not None  # the frames are still referenced here
        assert held < 2 * MIB, f"{held / MIB:.1f} MiB still held"
    finally:
        tracemalloc.stop()
        gc.enable()
