"""Counting the FHIR resources of a call (the MYOCDS_MAX_RESOURCES limit)."""

from __future__ import annotations

import pytest

from cds_service.errors import PayloadTooLarge
from cds_service.protocol.limits import check_resource_count, resources_in_call


def _bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


OBS = {"resourceType": "Observation"}


def test_resources_are_counted_in_prefetch_bundles_nested_bundles_and_draft_orders() -> None:
    body = {
        "prefetch": {
            "patient": {"resourceType": "Patient"},
            "observations": _bundle(OBS, OBS, _bundle(OBS, OBS)),
            "conditions": None,
            "empty": _bundle(),
        },
        "context": {"draftOrders": _bundle({"resourceType": "MedicationRequest"}, OBS)},
    }
    assert resources_in_call(body) == 1 + 4 + 2
    # A hook keeping its drafts in another context field (cds_service.hooks) is counted the same.
    body["context"] = {"patientId": "p", "dischargeOrders": body["context"]["draftOrders"]}
    assert resources_in_call(body) == 1 + 4 + 2


@pytest.mark.parametrize(
    "body",
    [None, [], "x", {"prefetch": []}, {"prefetch": {"k": [OBS]}}, {"context": {"draftOrders": 1}}],
)
def test_odd_shapes_count_what_is_there_and_never_fail(body: object) -> None:
    assert resources_in_call(body) == 0


def test_over_the_limit_is_413_with_a_clear_message() -> None:
    body = {"prefetch": {"observations": _bundle(*[OBS] * 11)}}
    check_resource_count(body, 11)
    with pytest.raises(PayloadTooLarge) as refused:
        check_resource_count(body, 10)
    assert refused.value.status == 413
    assert "12" not in refused.value.message and "11 FHIR resources" in refused.value.message
    assert "MYOCDS_MAX_RESOURCES" in refused.value.message
