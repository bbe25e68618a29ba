"""STAT-01…STAT-06 (rules.md): thresholds at and either side, bounds, hooks, what the card shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from cds_service.advice import statin as rules
from cds_service.advice.model import Advice
from cds_service.record.model import LabValue, PatientRecord
from cds_service.settings import ClinicalSettings
from tests.advice import builders as b
from tests.advice.cards import check_card, rules_table, template

TODAY = b.TODAY
CLINICAL = ClinicalSettings()
ALL_HOOKS = ("patient-view", "order-select", "order-sign")
ORDER_HOOKS = ("order-select", "order-sign")
ULN = 308  # male default and the lab range the builders use


def fired(record: PatientRecord, hook: str = "patient-view") -> dict[str, Advice]:
    return {a.rule_id: a for a in rules.evaluate(record, TODAY, CLINICAL, hook)}


def on_statin(*cks: object, hook: str = "patient-view", **kw: object) -> PatientRecord:
    """A record with the given CKs and an active atorvastatin order."""
    return b.record(hook=hook, ck=cks, statin_uses=(b.statin("active"),), **kw)  # type: ignore[arg-type]


def with_draft(*cks: object, hook: str = "order-sign", **kw: object) -> PatientRecord:
    return b.record(hook=hook, ck=cks, statin_uses=(b.drafted_statin(),), **kw)  # type: ignore[arg-type]


# --- STAT-01 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("ck", "fires"), [(3079, False), (3080, False), (3081, True)])
def test_stat01_threshold_is_strictly_above_10x(ck: int, fires: bool) -> None:
    assert ("STAT-01" in fired(on_statin(b.ck(ck, 2)))) is fires


def test_stat01_uses_the_results_own_uln() -> None:
    # 2,500 U/L is 12.5×ULN against a lab ULN of 200, 8.1× against 308.
    assert "STAT-01" in fired(on_statin(b.ck(2500, 2, uln=200)))
    assert "STAT-01" not in fired(on_statin(b.ck(2500, 2, uln=308)))


@pytest.mark.parametrize(
    ("comparator", "value", "fires"),
    [
        (">", 3080, True),
        (">=", 3080, True),  # r2: a lower bound exactly on 10×ULN takes the band above
        (">=", 3079, False),
        (">=", 3081, True),
        ("<", 9000, False),
        ("<=", 9000, False),
    ],
)
def test_stat01_bounds(comparator: str, value: int, fires: bool) -> None:
    ck = b.ck(value, 2, comparator=comparator)
    assert ("STAT-01" in fired(on_statin(ck))) is fires


@pytest.mark.parametrize(("days_ago", "fires"), [(0, True), (30, True), (31, False)])
def test_stat01_needs_a_recent_ck(days_ago: int, fires: bool) -> None:
    assert ("STAT-01" in fired(on_statin(b.ck(6950, days_ago)))) is fires


def test_stat01_judges_only_the_latest_ck() -> None:
    assert "STAT-01" not in fired(on_statin(b.ck(9000, 10), b.ck(400, 2)))


@pytest.mark.parametrize("status", ["stopped", "completed", "cancelled", "entered-in-error"])
def test_stat01_needs_a_statin(status: str) -> None:
    record = b.record(ck=(b.ck(6950, 2),), statin_uses=(b.statin(status, end=40),))
    assert "STAT-01" not in fired(record)


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_stat01_all_hooks_with_an_active_statin(hook: str) -> None:
    assert "STAT-01" in fired(on_statin(b.ck(6950, 2), hook=hook), hook)


@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_stat01_drafted_statin_suggests_deleting_the_draft(hook: str) -> None:
    record = with_draft(b.ck(6950, 2), hook=hook)
    advice = fired(record, hook)["STAT-01"]
    (suggestion,) = advice.suggestions
    assert suggestion.kind == "delete-draft"
    assert suggestion.target == record.statin_uses[0]


def test_stat01_active_order_is_stopped_not_a_statement() -> None:
    order = b.statin("on-hold", resource_id="mr-1")
    statement = b.statin("active", resource_id="ms-1", resource_type="MedicationStatement")
    record = b.record(ck=(b.ck(6950, 2),), statin_uses=(order, statement))
    advice = fired(record)["STAT-01"]
    assert [(s.kind, s.target) for s in advice.suggestions] == [("stop-active", order)]


def test_stat01_card_values_and_facts() -> None:
    record = b.record(
        gender="female",
        ck=(b.ck(6950, 3, uln=308),),
        statin_uses=(b.statin("active"),),
    )
    advice = fired(record)["STAT-01"]
    assert advice.indicator == "critical"
    assert advice.ck_trend
    assert advice.values["ck"] == "6,950"
    assert advice.values["ck_x_uln"] == "22.6"
    assert advice.values["ck_date"] == b.day_of(3).isoformat()
    assert advice.values["ck_preliminary"] == ""
    ck_fact = advice.facts[0]
    assert ck_fact.label == "CK" and ck_fact.value == "6,950 U/L (22.6×ULN)"
    assert ck_fact.day == b.day_of(3)
    assert ck_fact.note == "ULN 308 U/L (lab)"
    assert advice.facts[1].value == "atorvastatin 40 MG Oral Tablet"
    assert advice.caveats == ()
    assert check_card(advice).startswith("Stop the statin: CK 6,950 U/L = 22.6×ULN")


def test_assumed_uln_preliminary_converted_and_matched_by_name_are_said() -> None:
    ck = b.ck(
        "5200",
        2,
        uln=192,
        uln_assumed=True,
        status="preliminary",
        converted=True,
        original="86.6666 ukat/L",
    )
    lipitor = b.medication("LIPITOR tablets", statin=True, matched_by_name=True)
    record = b.record(
        gender="female",
        ck=(ck,),
        statin_uses=(b.use(lipitor, "active"),),
        unusable=(b.unusable("ck", "unit 'mmol/h' not recognised", 1),),
        skipped=(("Observation", 2),),
    )
    advice = fired(record)["STAT-01"]
    assert advice.values["ck_x_uln"] == "27.1"
    assert advice.values["ck_preliminary"] == " (preliminary)"
    note = advice.facts[0].note or ""
    assert "assumed ULN 192 U/L" in note
    assert "converted from 86.6666 ukat/L" in note
    assert "preliminary" in note
    text = " | ".join(advice.caveats)
    assert "Assumed ULN 192 U/L" in text and "female" in text
    assert "preliminary result" in text
    assert "Statin matched by name: LIPITOR tablets" in text
    assert "unit 'mmol/h' not recognised" in text
    assert "2 malformed Observation resources skipped" in text
    assert "matched by name" in (advice.facts[1].note or "")


def test_unusable_results_of_other_areas_are_not_caveats_of_a_ck_card() -> None:
    record = on_statin(b.ck(6950, 2), unusable=(b.unusable("iga", "unit 'x' not recognised"),))
    assert fired(record)["STAT-01"].caveats == ()


# --- STAT-02 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("ck", "fires"), [(12319, False), (12320, False), (12321, True)])
def test_stat02_40x_threshold_without_statin(ck: int, fires: bool) -> None:
    record = b.record(ck=(b.ck(ck, 2),))
    assert ("STAT-02" in fired(record)) is fires


@pytest.mark.parametrize(
    ("ck", "latest_creatinine", "fires"),
    [
        (3081, "1.5", True),
        (3081, "1.49", False),
        (3080, "2.5", False),  # not above 10×ULN
        (5000, "1.6", True),
    ],
)
def test_stat02_10x_with_creatinine_rise(ck: int, latest_creatinine: str, fires: bool) -> None:
    record = b.record(
        ck=(b.ck(ck, 1),),
        creatinine=(b.creatinine("1.0", 20), b.creatinine(latest_creatinine, 1)),
    )
    assert ("STAT-02" in fired(record)) is fires


def test_stat02_creatinine_must_be_recent() -> None:
    record = b.record(
        ck=(b.ck(5000, 1),),
        creatinine=(b.creatinine("1.0", 60), b.creatinine("2.0", 31)),
    )
    assert "STAT-02" not in fired(record)


def test_stat02_creatinine_in_umol_converted_shows_on_the_card() -> None:
    previous = b.creatinine("0.9", 20, converted=True, original="80 umol/L")
    newest = b.creatinine("1.6", 1, status="preliminary")
    record = b.record(ck=(b.ck(5000, 1),), creatinine=(previous, newest))
    advice = fired(record)["STAT-02"]
    assert advice.values["creatinine_clause"] == ", creatinine 0.9 mg/dL → 1.6 mg/dL"
    labels = [(f.label, f.value, f.note) for f in advice.facts]
    assert ("Creatinine", "0.9 mg/dL", "converted from 80 umol/L") in labels
    assert ("Creatinine", "1.6 mg/dL", "preliminary") in labels
    assert "Creatinine 1.6 mg/dL (2025-06-30) is a preliminary result" in advice.caveats
    assert advice.ck_trend
    check_card(advice)


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_stat02_all_hooks(hook: str) -> None:
    assert "STAT-02" in fired(b.record(hook=hook, ck=(b.ck(14000, 2, uln=200),)), hook)


def test_stat02_with_stat01_over_40x_on_a_statin() -> None:
    found = fired(on_statin(b.ck(14000, 2, uln=200)))
    assert {"STAT-01", "STAT-02"} <= set(found)
    assert found["STAT-02"].values["ck_x_uln"] == "70.0"
    assert "above 40×ULN" in found["STAT-02"].values["reasons"]


# --- STAT-03 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ck", "fires"), [(1231, False), (1232, False), (1233, True), (3080, True), (3081, False)]
)
def test_stat03_between_4x_exclusive_and_10x_inclusive(ck: int, fires: bool) -> None:
    assert ("STAT-03" in fired(on_statin(b.ck(ck, 2)))) is fires


@pytest.mark.parametrize(
    ("comparator", "value", "fires"),
    [
        ("<", 3000, False),  # could be anything below 3,000: "> 4×ULN" not decided
        ("<=", 3080, False),
    ],
)
def test_stat03_upper_bounds_that_cannot_decide_do_not_fire(
    comparator: str, value: int, fires: bool
) -> None:
    assert ("STAT-03" in fired(on_statin(b.ck(value, 2, comparator=comparator)))) is fires


STAT_CK_RULES = ("STAT-01", "STAT-02", "STAT-03", "STAT-04")


@pytest.mark.parametrize("comparator", [">", ">="])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (200, set()),  # a lower bound under the ULN: no card
        (308, set()),  # at the ULN: no card
        (309, {"STAT-04"}),
        (1231, {"STAT-04"}),
        (1232, {"STAT-03"}),  # exactly 4×ULN: the band above
        (1300, {"STAT-03"}),
        (3079, {"STAT-03"}),
        (3080, {"STAT-01"}),  # exactly 10×ULN: the band above
        (12319, {"STAT-01"}),
        (12321, {"STAT-01", "STAT-02"}),
    ],
)
def test_ck_lower_bound_bands(comparator: str, value: int, expected: set[str]) -> None:
    # rules.md "CK as a lower bound" (r2): ">V"/">=V" is at least V; STAT-01…04 use the band that
    # contains V, the band above when V is exactly on 4×ULN or 10×ULN.
    found = fired(on_statin(b.ck(value, 2, uln=308, comparator=comparator)))
    assert {rule for rule in found if rule in STAT_CK_RULES} == expected


@pytest.mark.parametrize(("comparator", "rhabdo"), [(">=", False), (">", True)])
def test_stat02_lower_bound_exactly_40x(comparator: str, rhabdo: bool) -> None:
    # ">=V" meets 40×ULN only when V > 40×ULN; ">V" when V >= 40×ULN (rules.md r2).
    found = fired(on_statin(b.ck(12320, 2, uln=308, comparator=comparator)))
    assert ("STAT-02" in found) is rhabdo
    assert "STAT-01" in found


def test_lower_bound_card_shows_the_comparator() -> None:
    advice = fired(on_statin(b.ck(3080, 2, uln=308, comparator=">=")))["STAT-01"]
    assert advice.values["ck"] == ">=3,080"
    assert advice.values["ck_shown"] == "\u2265 3,080"
    assert advice.values["ck_x_uln_shown"] == "at least 10.0"
    assert advice.values["ck_x_uln"] == ">=10.0"


def test_stat03_suggests_ck_and_tsh() -> None:
    advice = fired(with_draft(b.ck(1000, 2, uln=192)), "order-sign")["STAT-03"]
    assert [(s.kind, s.loinc) for s in advice.suggestions] == [
        ("order-lab", "2157-6"),
        ("order-lab", "3016-3"),
    ]
    assert advice.values["ck_x_uln"] == "5.2"
    assert advice.ck_trend
    check_card(advice)


def test_stat03_needs_a_statin() -> None:
    assert "STAT-03" not in fired(b.record(ck=(b.ck(2000, 2),)))


# --- STAT-04 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ck", "fires"), [(308, False), (309, True), (600, True), (1232, True), (1233, False)]
)
def test_stat04_above_uln_up_to_4x(ck: int, fires: bool) -> None:
    assert ("STAT-04" in fired(on_statin(b.ck(ck, 2)))) is fires


@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_stat04_patient_view_only(hook: str) -> None:
    assert "STAT-04" not in fired(on_statin(b.ck(600, 2), hook=hook), hook)


def test_stat04_needs_an_active_statin() -> None:
    assert "STAT-04" not in fired(b.record(ck=(b.ck(600, 2),)))
    stopped = b.record(ck=(b.ck(600, 2),), statin_uses=(b.statin("stopped", end=5),))
    assert "STAT-04" not in fired(stopped)


def test_stat04_card() -> None:
    advice = fired(on_statin(b.ck(600, 2)))["STAT-04"]
    assert advice.indicator == "info" and advice.ck_trend and advice.suggestions == ()
    assert advice.values["ck_x_uln"] == "1.9"
    check_card(advice)


@pytest.mark.parametrize(
    ("ck", "expected"),
    [
        (308, set()),
        (309, {"STAT-04"}),
        (1233, {"STAT-03"}),
        (3081, {"STAT-01"}),
        (12321, {"STAT-01", "STAT-02"}),
    ],
)
def test_ck_bands_do_not_overlap(ck: int, expected: set[str]) -> None:
    assert set(fired(on_statin(b.ck(ck, 2)))) == expected


# --- STAT-05 --------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_stat05_order_hooks_need_a_drafted_statin(hook: str) -> None:
    positive = (b.hmgcr(85, 300),)
    drafted = b.record(hook=hook, hmgcr=positive, statin_uses=(b.drafted_statin(),))
    active_only = b.record(hook=hook, hmgcr=positive, statin_uses=(b.statin("active"),))
    advice = fired(drafted, hook)["STAT-05"]
    assert advice.indicator == "critical"
    assert [(s.kind, s.target) for s in advice.suggestions] == [
        ("delete-draft", drafted.statin_uses[0])
    ]
    assert "STAT-05" not in fired(active_only, hook)
    check_card(advice)


def test_stat05_patient_view_needs_an_active_statin() -> None:
    cond = b.condition("Immune-mediated necrotizing myopathy", onset=500)
    active = b.record(conditions=(cond,), statin_uses=(b.statin("active"),))
    stopped = b.record(conditions=(cond,), statin_uses=(b.statin("stopped", end=400),))
    advice = fired(active)["STAT-05"]
    assert advice.suggestions == ()
    assert advice.values["hmgcr"] == "diagnosis: Immune-mediated necrotizing myopathy"
    assert advice.values["hmgcr_date"] == b.day_of(500).isoformat()
    assert "STAT-05" not in fired(stopped)
    check_card(advice)


def test_stat05_negative_antibody_does_not_fire() -> None:
    record = b.record(
        hook="order-select", hmgcr=(b.hmgcr(12, 30),), statin_uses=(b.drafted_statin(),)
    )
    assert "STAT-05" not in fired(record, "order-select")


def test_stat05_is_not_ck_driven() -> None:
    record = b.record(
        hook="order-select", hmgcr=(b.hmgcr(85, 30),), statin_uses=(b.drafted_statin(),)
    )
    advice = fired(record, "order-select")["STAT-05"]
    assert not advice.ck_trend
    assert advice.values["hmgcr"] == "anti-HMGCR 85 U"


# --- STAT-06 --------------------------------------------------------------------------------


def rechallenge(
    *cks: object, stop: int = 30, hook: str = "order-select", draft: bool = True, **kw: object
) -> PatientRecord:
    uses = [b.statin("stopped", end=stop, resource_id="old")]
    if draft:
        uses.append(b.drafted_statin())
    return b.record(hook=hook, ck=cks, statin_uses=tuple(uses), **kw)  # type: ignore[arg-type]


def test_stat06_scenario_numbers() -> None:
    record = rechallenge(b.ck(9500, 34), b.ck(900, 6), stop=30)
    advice = fired(record, "order-select")["STAT-06"]
    assert advice.indicator == "warning" and advice.ck_trend
    assert advice.values["peak"] == "9,500" and advice.values["peak_x_uln"] == "30.8"
    assert advice.values["stop_date"] == b.day_of(30).isoformat()
    # Both reasons hold (900 U/L is 2.9×ULN; stopped 30 days ago): the CK is the one shown.
    assert advice.values["why"] == f"CK still 2.9×ULN on {b.day_of(6).isoformat()}"
    assert advice.values["stopped_statin"] == "atorvastatin 40 MG Oral Tablet"
    assert advice.values["statin"] == "simvastatin 40 MG Oral Tablet"
    check_card(advice)


@pytest.mark.parametrize(
    ("peak_days_from_stop", "fires"),
    [(-31, False), (-30, True), (0, True), (30, True), (31, False)],
)
def test_stat06_peak_within_30_days_either_side(peak_days_from_stop: int, fires: bool) -> None:
    stop = 100
    record = rechallenge(b.ck(9500, stop - peak_days_from_stop), b.ck(900, 5), stop=stop)
    # Stopped 100 days ago, so only a CK still above the ULN can fire; 900 U/L is 2.9×ULN.
    assert ("STAT-06" in fired(record, "order-select")) is fires


@pytest.mark.parametrize(("days_since_stop", "fires"), [(55, True), (56, False), (200, False)])
def test_stat06_too_soon_is_under_56_days(days_since_stop: int, fires: bool) -> None:
    record = rechallenge(b.ck(9500, days_since_stop + 2), b.ck(200, 1), stop=days_since_stop)
    assert ("STAT-06" in fired(record, "order-select")) is fires


@pytest.mark.parametrize(("latest", "fires"), [(308, False), (309, True)])
def test_stat06_latest_ck_above_uln_even_long_after(latest: int, fires: bool) -> None:
    record = rechallenge(b.ck(9500, 302), b.ck(latest, 3), stop=300)
    advice = fired(record, "order-sign").get("STAT-06")
    assert (advice is not None) is fires
    if advice is not None:
        assert advice.values["why"].startswith("CK still 1.0×ULN")


def test_stat06_peak_must_be_above_10x() -> None:
    record = rechallenge(b.ck(3080, 32), stop=30)
    assert "STAT-06" not in fired(record, "order-select")


def test_stat06_hooks_and_draft() -> None:
    assert "STAT-06" not in fired(rechallenge(b.ck(9500, 34), stop=30, hook="patient-view"))
    assert "STAT-06" not in fired(rechallenge(b.ck(9500, 34), stop=30, draft=False), "order-sign")
    assert "STAT-06" in fired(rechallenge(b.ck(9500, 34), stop=30, hook="order-sign"), "order-sign")


def test_stat06_no_stop_date_while_another_statin_is_active() -> None:
    record = b.record(
        hook="order-select",
        ck=(b.ck(9500, 34),),
        statin_uses=(
            b.statin("stopped", end=30, resource_id="old"),
            b.statin("active", resource_id="current"),
            b.drafted_statin(),
        ),
    )
    assert "STAT-06" not in fired(record, "order-select")


# --- templates and registry -----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["STAT-01", "STAT-02", "STAT-03", "STAT-04", "STAT-05", "STAT-06"])
def test_templates_agree_with_rules_md(rule: str) -> None:
    row = rules_table()[rule]
    data = template(rule)
    assert data["rule"] == rule
    assert data["sources"] == row["sources"]
    assert data["indicator"] == row["indicator"]
    hooks = set(data["hooks"])
    if row["hooks"] == "all":
        assert hooks == set(ALL_HOOKS)
    else:
        assert hooks == {h for h in ALL_HOOKS if h in row["hooks"]}
    assert 2 <= len(data["overrideReasons"]) <= 4


WORST_CK = b.ck(123456, 2, comparator=">", uln=100, status="preliminary")
WORST_STATIN = b.medication(
    "ezetimibe 10 MG / simvastatin 80 MG Oral Tablet [Vytorin] (long text)", statin=True
)


def test_worst_case_summaries_fit() -> None:
    big = WORST_CK
    draft = b.drafted_statin(WORST_STATIN)
    record = b.record(
        hook="order-sign",
        ck=(big,),
        statin_uses=(draft, b.statin("active", WORST_STATIN)),
        creatinine=(b.creatinine("10.25", 20), b.creatinine("12.75", 1, comparator=">")),
        hmgcr=(b.hmgcr("1234.5", 30, unit="U/mL", interpretation=("POS", "HH")),),
    )
    found = fired(record, "order-sign")
    assert {"STAT-01", "STAT-02", "STAT-05"} <= set(found)
    for advice in found.values():
        check_card(advice)
    cond = b.condition("Immune-mediated necrotizing myopathy associated with statin therapy (x)")
    record = b.record(hook="order-select", conditions=(cond,), statin_uses=(draft,))
    check_card(fired(record, "order-select")["STAT-05"])
    for value in (1233, 309):  # STAT-03, STAT-04 with a huge ULN, preliminary
        ck = b.ck(value * 1000, 2, uln=308000, comparator=None, status="preliminary")
        for advice in fired(on_statin(ck)).values():
            check_card(advice)
    record = rechallenge(b.ck(123456, 31, comparator=">", uln=100), b.ck(99999, 1, uln=100), stop=1)
    check_card(fired(record, "order-select")["STAT-06"])


def test_registry_reaches_these_rules() -> None:
    from cds_service.advice import statin

    assert statin.evaluate is rules.evaluate
    assert rules.evaluate(b.record(), TODAY, CLINICAL, "patient-view") == []


def test_thresholds_are_exact_not_rounded() -> None:
    # 3,080.4 U/L / 308 = 10.001×ULN: above 10×ULN though it shows as 10.0.
    advice = fired(on_statin(b.ck("3080.4", 2)))["STAT-01"]
    # rules.md "CK ULN": "only the display is rounded (one decimal)".
    assert advice.values["ck_x_uln"] == "10.0"
    assert replace(b.ck("3080.4", 2)).times_uln > Decimal(10)


# --- rules.md r2: anti-HMGCR without a number, resolved Condition, long lab text ------------


def qualitative(finding: str, text: str, status: str = "final") -> LabValue:
    """An anti-HMGCR result with no number, read for its finding (rules.md r2)."""
    return replace(b.hmgcr(0, 30, status=status), qualitative=True, finding=finding, original=text)


@pytest.mark.parametrize(("finding", "fires"), [("positive", True), ("negative", False)])
def test_stat05_hmgcr_without_a_number_by_its_finding(finding: str, fires: bool) -> None:
    record = b.record(
        hook="order-sign",
        statin_uses=(b.drafted_statin(),),
        hmgcr=(qualitative(finding, finding.upper()),),
    )
    assert ("STAT-05" in fired(record, "order-sign")) is fires


@pytest.mark.parametrize("clinical_status", ["resolved", "inactive", "remission", None])
def test_stat05_hmgcr_condition_of_any_clinical_status(clinical_status: str | None) -> None:
    cond = b.condition("Statin-associated anti-HMGCR necrotizing myopathy",
                       clinical_status=clinical_status, onset=date(2021, 3, 1))
    record = b.record(hook="order-sign", conditions=(cond,), statin_uses=(b.drafted_statin(),))
    assert fired(record, "order-sign")["STAT-05"].values["hmgcr_date"] == "2021-03-01"
    refuted = replace(cond, verification_status="refuted")
    record = b.record(hook="order-sign", conditions=(refuted,), statin_uses=(b.drafted_statin(),))
    assert "STAT-05" not in fired(record, "order-sign")


@pytest.mark.parametrize("length", [17, 200, 5000])
def test_stat05_long_lab_text_is_carried_and_shortened_in_the_summary(length: int) -> None:
    text = ("POSITIVE (>200 U) " + "x" * length)[:length]
    record = b.record(
        hook="order-sign",
        statin_uses=(b.drafted_statin(),),
        hmgcr=(qualitative("positive", text, status="preliminary"),),
    )
    advice = fired(record, "order-sign")["STAT-05"]
    # The advice passes the lab's text in full; shortening it is the card's (cards_render).
    assert advice.values["hmgcr"] == f"anti-HMGCR {text}"
    assert advice.values["hmgcr_notes"] == ", preliminary"
    assert any(fact.value == text for fact in advice.facts)  # in full in "Values used"
    summary = check_card(advice)
    day = b.day_of(30).isoformat()
    if length == 17:
        assert summary == (
            f"Anti-HMGCR myopathy (anti-HMGCR POSITIVE (>200 U), preliminary, {day}): "
            "no statin re-exposure; use non-statin lipid lowering"
        )
    else:  # cut at the word boundary before the run of x, "preliminary" and the rest kept
        assert summary == (
            f"Anti-HMGCR myopathy (anti-HMGCR POSITIVE (>200 U)\u2026, preliminary, {day}): "
            "no statin re-exposure; use non-statin lipid lowering"
        )
