"""HMG-01…HMG-03 (rules.md): withdrawal windows at and either side, CK after the stop, anti-HMGCR
on file, hooks, settings, what the card shows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cds_service.advice import hmgcr as rules
from cds_service.advice.model import Advice
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings
from tests.advice import builders as b
from tests.advice.cards import check_card, rules_table, template

TODAY = b.TODAY
CLINICAL = ClinicalSettings()


def fired(
    record: PatientRecord, hook: str = "patient-view", clinical: ClinicalSettings = CLINICAL
) -> dict[str, Advice]:
    return {a.rule_id: a for a in rules.evaluate(record, TODAY, clinical, hook)}


def stopped(stop: int, *cks: object, hook: str = "patient-view", **kw: object) -> PatientRecord:
    """A statin course that ended ``stop`` days ago, and the given CKs."""
    uses = kw.pop("statin_uses", ())
    return b.record(
        hook=hook,
        ck=cks,  # type: ignore[arg-type]
        statin_uses=(b.statin("stopped", b.SIMVASTATIN, end=stop, resource_id="old"), *uses),  # type: ignore[misc]
        **kw,  # type: ignore[arg-type]
    )


# --- HMG-01 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "expected"), [(55, None), (56, "HMG-01"), (122, "HMG-01")])
def test_hmg01_from_56_days(days: int, expected: str | None) -> None:
    # 1,800 U/L vs a lab ULN of 192: 9.4×ULN, not above 10×ULN (HMG-02 would need a rise).
    record = stopped(days, b.ck(1800, 2, uln=192))
    found = fired(record)
    assert ("HMG-01" in found) is (expected == "HMG-01")
    assert "HMG-02" not in found


def test_hmg01_withdrawal_days_is_a_setting() -> None:
    record = stopped(60, b.ck(1800, 2, uln=192))
    later = replace(CLINICAL, hmg_withdrawal_days=90)
    assert "HMG-01" in fired(record)
    assert "HMG-01" not in fired(record, clinical=later)


@pytest.mark.parametrize(("ck", "fires"), [(192, False), (193, True)])
def test_hmg01_latest_ck_above_uln(ck: int, fires: bool) -> None:
    assert ("HMG-01" in fired(stopped(100, b.ck(ck, 2, uln=192)))) is fires


def test_hmg01_upper_bound_ck_is_not_above_uln() -> None:
    assert "HMG-01" not in fired(stopped(100, b.ck(500, 2, uln=192, comparator="<")))


@pytest.mark.parametrize(("ck_day_from_stop", "fires"), [(-5, False), (0, False), (1, True)])
def test_hmg01_ck_dated_after_the_stop(ck_day_from_stop: int, fires: bool) -> None:
    stop = 100
    record = stopped(stop, b.ck(1800, stop - ck_day_from_stop, uln=192))
    assert ("HMG-01" in fired(record)) is fires


def test_hmg01_latest_ck_not_just_any_ck_after_the_stop() -> None:
    # High after the stop, then back to normal: silent.
    record = stopped(100, b.ck(1800, 60, uln=192), b.ck(150, 5, uln=192))
    assert "HMG-01" not in fired(record)


def test_hmg01_needs_no_recent_ck() -> None:
    record = stopped(300, b.ck(1800, 200, uln=192))
    assert "HMG-01" in fired(record)


@pytest.mark.parametrize("value", ["4", "85"])
def test_hmg01_silent_when_any_anti_hmgcr_result_is_on_file(value: str) -> None:
    record = stopped(100, b.ck(1800, 2, uln=192), hmgcr=(b.hmgcr(value, 400),))
    assert "HMG-01" not in fired(record)


def test_hmg01_unusable_anti_hmgcr_is_not_on_file_but_is_said() -> None:
    record = stopped(
        100,
        b.ck(1800, 2, uln=192),
        unusable=(b.unusable("hmgcr", "unit 'index' not recognised", 50),),
    )
    advice = fired(record)["HMG-01"]
    assert any("Anti-HMGCR result" in c and "'index' not recognised" in c for c in advice.caveats)


def test_hmg01_silent_with_an_active_statin() -> None:
    record = stopped(100, b.ck(1800, 2, uln=192), statin_uses=(b.statin("active"),))
    assert "HMG-01" not in fired(record)


def test_hmg01_silent_with_a_drafted_statin() -> None:
    record = stopped(
        100, b.ck(1800, 2, uln=192), hook="order-select", statin_uses=(b.drafted_statin(),)
    )
    assert "HMG-01" not in fired(record, "order-select")


def test_hmg01_silent_without_a_stop_date() -> None:
    record = b.record(ck=(b.ck(1800, 2, uln=192),), statin_uses=(b.statin("stopped", end=None),))
    assert "HMG-01" not in fired(record)


@pytest.mark.parametrize(
    ("hook", "fires"), [("patient-view", True), ("order-select", True), ("order-sign", False)]
)
def test_hmg01_hooks(hook: str, fires: bool) -> None:
    assert ("HMG-01" in fired(stopped(100, b.ck(1800, 2, uln=192), hook=hook), hook)) is fires


def test_hmg01_card() -> None:
    record = stopped(122, b.ck(1800, 2, uln=192, uln_assumed=True), gender="female")
    advice = fired(record)["HMG-01"]
    assert advice.indicator == "warning" and advice.ck_trend
    assert [(s.kind, s.loinc) for s in advice.suggestions] == [("order-lab", "93493-5")]
    assert advice.values["ck_x_uln"] == "9.4"
    assert advice.values["days_since_stop"] == "122"
    assert advice.values["stop_date"] == b.day_of(122).isoformat()
    assert advice.values["stopped_statin"] == "simvastatin 40 MG Oral Tablet"
    assert any(c.startswith("Assumed ULN 192 U/L") for c in advice.caveats)
    assert [f.label for f in advice.facts] == ["Latest CK", "Statin"]
    summary = check_card(advice)
    # The CK is 2 days old; the 122 days are since the stop, not the CK's age after it.
    assert summary == (
        "CK still 9.4×ULN (1,800 U/L, 2025-06-29); statin stopped 122 days ago: "
        "test anti-HMGCR antibodies"
    )


# --- HMG-02 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "fires"), [(27, False), (28, True), (55, True), (56, False)])
def test_hmg02_window_28_to_55_days(days: int, fires: bool) -> None:
    record = stopped(days, b.ck(4000, 2))  # 13.0×ULN
    found = fired(record)
    assert ("HMG-02" in found) is fires
    assert ("HMG-01" in found) is (days >= 56)


def test_hmg02_early_window_is_a_setting() -> None:
    record = stopped(21, b.ck(4000, 2))
    assert "HMG-02" not in fired(record)
    assert "HMG-02" in fired(record, clinical=replace(CLINICAL, hmg_early_days=14))


@pytest.mark.parametrize(("ck", "fires"), [(3080, False), (3081, True)])
def test_hmg02_above_10x_without_a_previous_ck(ck: int, fires: bool) -> None:
    assert ("HMG-02" in fired(stopped(35, b.ck(ck, 2)))) is fires


@pytest.mark.parametrize(("before", "fires"), [(1999, True), (2000, True), (2001, False)])
def test_hmg02_not_falling(before: int, fires: bool) -> None:
    # The CK just before counts whether it is dated before (here) or after the stop.
    record = stopped(35, b.ck(before, 40), b.ck(2000, 2))
    assert ("HMG-02" in fired(record)) is fires


def test_hmg02_previous_ck_after_the_stop_counts() -> None:
    record = stopped(40, b.ck(900, 20), b.ck(1000, 2))
    advice = fired(record)["HMG-02"]
    assert advice.values["trend"] == "not falling"
    assert [f.label for f in advice.facts][:2] == ["Latest CK", "CK before it"]
    check_card(advice)


def test_hmg02_previous_lower_bound_cannot_show_not_falling() -> None:
    record = stopped(35, b.ck(1000, 40, comparator=">"), b.ck(2000, 2))
    assert "HMG-02" not in fired(record)


def test_hmg02_latest_still_must_be_above_uln() -> None:
    record = stopped(35, b.ck(200, 40), b.ck(300, 2))  # rising but normal
    assert "HMG-02" not in fired(record)


def test_hmg02_silent_when_anti_hmgcr_on_file_or_statin_drafted() -> None:
    assert "HMG-02" not in fired(stopped(35, b.ck(4000, 2), hmgcr=(b.hmgcr(3, 10),)))
    drafted = stopped(35, b.ck(4000, 2), hook="order-select", statin_uses=(b.drafted_statin(),))
    assert "HMG-02" not in fired(drafted, "order-select")


@pytest.mark.parametrize(
    ("hook", "fires"), [("patient-view", True), ("order-select", True), ("order-sign", False)]
)
def test_hmg02_hooks(hook: str, fires: bool) -> None:
    assert ("HMG-02" in fired(stopped(35, b.ck(4000, 2), hook=hook), hook)) is fires


def test_hmg02_card_scenario_numbers() -> None:
    advice = fired(stopped(35, b.ck(4000, 2)))["HMG-02"]
    assert advice.values["ck_x_uln"] == "13.0"
    assert advice.values["trend"] == "above 10×ULN"
    assert advice.values["withdrawal_days"] == "56"
    assert [f.label for f in advice.facts] == ["Latest CK", "Statin"]
    summary = check_card(advice)
    assert summary == (
        "CK 4,000 U/L = 13.0×ULN on 2025-06-29, above 10×ULN; statin stopped 35 days ago: "
        "test anti-HMGCR"
    )


# --- HMG-03 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("days_ago", "fires"), [(180, True), (181, False)])
def test_hmg03_positive_within_180_days(days_ago: int, fires: bool) -> None:
    record = b.record(hmgcr=(b.hmgcr(85, days_ago),))
    assert ("HMG-03" in fired(record)) is fires


def test_hmg03_silent_once_ivig_given() -> None:
    record = b.record(hmgcr=(b.hmgcr(85, 30),), ivig_given=(b.given(10),))
    assert "HMG-03" not in fired(record)


def test_hmg03_negative_result_silent() -> None:
    assert "HMG-03" not in fired(b.record(hmgcr=(b.hmgcr("19.9", 30),)))


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_hmg03_patient_view_only(hook: str) -> None:
    assert "HMG-03" not in fired(b.record(hook=hook, hmgcr=(b.hmgcr(85, 30),)), hook)


def test_hmg03_undated_condition_counts() -> None:
    record = b.record(conditions=(b.condition("Anti-HMGCR necrotizing myopathy"),))
    advice = fired(record)["HMG-03"]
    assert advice.values["hmgcr_date"] == "undated"
    assert advice.facts[0].note == "Condition active; no onset or recorded date"
    check_card(advice)


def test_hmg03_card() -> None:
    record = b.record(hmgcr=(b.hmgcr(85, 30, status="preliminary", interpretation=("H",)),))
    advice = fired(record)["HMG-03"]
    assert advice.indicator == "critical" and not advice.ck_trend
    # No nested parentheses in the summary, and a preliminary result says so there too.
    assert advice.values["hmgcr"] == "anti-HMGCR 85 U"
    assert advice.values["hmgcr_notes"] == ", flagged H, preliminary"
    assert advice.values["hmgcr_date"] == b.day_of(30).isoformat()
    assert advice.facts[0].note == "flagged H; preliminary"
    assert any("preliminary" in c for c in advice.caveats)
    assert check_card(advice) == (
        f"Anti-HMGCR positive (anti-HMGCR 85 U, flagged H, preliminary, {b.day_of(30)}), "
        "no IVIG yet: refer for immunotherapy; no statins"
    )


def test_hmg03_long_lab_text_is_shortened_by_the_card_not_the_advice() -> None:
    text = "POSITIVE (>200 U) confirmed by a second method at the reference laboratory"
    result = replace(b.hmgcr(0, 30, status="preliminary"), qualitative=True, finding="positive",
                     original=text)
    advice = fired(b.record(hmgcr=(result,)))["HMG-03"]
    assert advice.values["hmgcr"] == f"anti-HMGCR {text}"
    summary = check_card(advice)
    assert summary == (
        "Anti-HMGCR positive (anti-HMGCR POSITIVE (>200 U) confirmed\u2026, "
        f"preliminary, {b.day_of(30)}), no IVIG yet: refer for immunotherapy; no statins"
    )


# --- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["HMG-01", "HMG-02", "HMG-03"])
def test_templates_agree_with_rules_md(rule: str) -> None:
    row = rules_table()[rule]
    data = template(rule)
    assert data["rule"] == rule
    assert data["sources"] == row["sources"]
    assert data["indicator"] == row["indicator"]
    assert set(data["hooks"]) == {h.strip() for h in row["hooks"].split(",")}
    assert 2 <= len(data["overrideReasons"]) <= 4


def test_worst_case_summaries_fit() -> None:
    big = b.ck(123456, 1, comparator=">", uln=100, status="preliminary")
    check_card(fired(stopped(9999, big))["HMG-01"])
    check_card(fired(stopped(55, b.ck(99999, 40, uln=100), b.ck(99999, 1, uln=100)))["HMG-02"])
    check_card(fired(stopped(55, big))["HMG-02"])
    cond = b.condition("Immune-mediated necrotizing myopathy due to statin, severe (x)", onset=3)
    check_card(fired(b.record(conditions=(cond,)))["HMG-03"])
    lab = b.hmgcr("123456.7", 3, comparator=">", unit="U/mL", interpretation=("POS", "HH"))
    check_card(fired(b.record(hmgcr=(lab,)))["HMG-03"])


# --- rules.md r2: a negative anti-HMGCR without a number is on file ---------------------------


@pytest.mark.parametrize(("finding", "silent"), [("negative", True), ("positive", True)])
def test_hmg01_result_without_a_number_is_on_file(finding: str, silent: bool) -> None:
    raised = stopped(100, b.ck(900, 5, uln=192))
    assert "HMG-01" in fired(raised)
    result = replace(b.hmgcr(0, 10), qualitative=True, finding=finding, original=finding)
    assert ("HMG-01" not in fired(replace(raised, hmgcr=(result,)))) is silent


def test_hmg03_positive_without_a_number() -> None:
    result = replace(b.hmgcr(0, 10), qualitative=True, finding="positive", original="Positive")
    assert "HMG-03" in fired(b.record(hmgcr=(result,)))
    negative = replace(result, finding="negative", original="Negative")
    assert "HMG-03" not in fired(b.record(hmgcr=(negative,)))


def test_hmg03_long_lab_text_fits_the_summary() -> None:
    text = "POSITIVE (>200 U) " + "confirmed by a second method; " * 50
    result = replace(b.hmgcr(0, 10, status="preliminary"), qualitative=True, finding="positive",
                     original=text)
    check_card(fired(b.record(hmgcr=(result,)))["HMG-03"])
