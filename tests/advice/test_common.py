"""``advice.common``: the one wording every area's cards use for what was assumed or uncertain
(caveats) and for the values used (facts), and the hooks a rule is asked on."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cds_service.advice import common
from cds_service.record.model import format_number
from tests.advice import builders as b


def test_caveats_in_order_each_once() -> None:
    assumed = b.ck(5000, 3, uln=192, uln_assumed=True, status="preliminary")
    converted = b.lab("iga", "7", 2, converted=True, original="0.07 g/L")
    by_name = b.use(b.medication("Lipitor", statin=True, matched_by_name=True))
    ivig_by_name = b.use(b.medication("Privigen", ivig=True, matched_by_name=True))
    record = b.record(
        gender="female",
        unusable=(
            b.unusable("ck", "unit 'mmol/h' not recognised", 5),
            b.unusable("ck", "no effective time", None, resource_id="bad-2"),
            b.unusable("iga", "unit 'mg%' not recognised", 5),
        ),
        skipped=(("Observation", 1), ("Condition", 2), ("Medication", 0)),
    )
    notes = common.card_caveats(
        record,
        used=(assumed, None, converted, assumed),
        converted=True,
        extra=("Rule's own note",),
        medications=(by_name, ivig_by_name, by_name),
        unusable_kinds=("ck",),
    )
    assert notes == (
        "Assumed ULN 192 U/L for the CK of 2025-06-28 (no reference range on the result; "
        "default for sex female)",
        "CK 5,000 U/L (2025-06-28) is a preliminary result",
        "Serum IgA converted from 0.07 g/L to 7 mg/dL (2025-06-29)",
        "Rule's own note",
        "Statin matched by name: Lipitor",
        "IVIG matched by name: Privigen",
        "CK result of 2025-06-26 not used: unit 'mmol/h' not recognised",
        "CK result not used: no effective time",
        "1 malformed Observation resource skipped",
        "2 malformed Condition resources skipped",
    )


def test_conversions_are_said_only_when_asked() -> None:
    converted = b.creatinine("0.9", 2, converted=True, original="80 umol/L")
    assert common.card_caveats(b.record(), used=(converted,)) == ()
    assert common.value_caveats(b.record(), (converted,), converted=True) == [
        "Creatinine converted from 80 umol/L to 0.9 mg/dL (2025-06-29)"
    ]


def test_ck_fact_notes_and_days_ago() -> None:
    ck = b.ck(
        "2600", 12, uln=260, converted=True, original="43.3333 ukat/L", status="preliminary"
    )
    fact = common.ck_fact(ck, "Latest CK", days_ago=12)
    assert fact.label == "Latest CK"
    assert fact.value == "2,600 U/L (10.0×ULN)"
    assert fact.note == "12 days ago; ULN 260 U/L (lab); converted from 43.3333 ukat/L; preliminary"
    assumed = common.ck_fact(b.ck(384, 1, uln=192, uln_assumed=True, comparator=">"))
    assert assumed.value == ">384 U/L (>2.0×ULN)"
    assert assumed.note == "assumed ULN 192 U/L"


def test_lab_fact_shows_conversion_flags_preliminary_and_the_rules_note() -> None:
    value = b.lab(
        "creatinine",
        "1.6",
        1,
        converted=True,
        original="141 umol/L",
        interpretation=("H",),
        status="preliminary",
    )
    fact = common.lab_fact(value, extra="above ULN 1.3 mg/dL")
    assert (fact.label, fact.value) == ("Creatinine", "1.6 mg/dL")
    assert fact.note == "converted from 141 umol/L; flagged H; preliminary; above ULN 1.3 mg/dL"
    assert common.lab_fact(b.lab("weight", "80", 1)).note is None


def test_ck_values_use_the_prefix() -> None:
    values = common.ck_values(b.ck(6950, 2, uln=308), "peak")
    assert values == {
        "peak": "6,950",
        "peak_x_uln": "22.6",
        "peak_date": "2025-06-29",
        "peak_uln": "308",
        "peak_preliminary": "",
        "peak_shown": "6,950",
        "peak_x_uln_shown": "22.6",
    }


@pytest.mark.parametrize(
    ("comparator", "shown", "x_uln_shown"),
    [(">=", "\u2265 3,080", "at least 10.0"), (">", "> 3,080", "over 10.0"),
     ("<", "< 3,080", "under 10.0"), ("<=", "\u2264 3,080", "at most 10.0")],
)
def test_ck_values_say_the_bound_in_words(comparator: str, shown: str, x_uln_shown: str) -> None:
    values = common.ck_values(b.ck(3080, 2, uln=308, comparator=comparator))
    assert (values["ck_shown"], values["ck_x_uln_shown"]) == (shown, x_uln_shown)


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [("0.05", 1, "0.1"), ("0.25", 1, "0.3"), ("1645.5", 0, "1,646"), ("70.50", 2, "70.5")],
)
def test_display_rounding_is_half_up(value: str, places: int, text: str) -> None:
    assert format_number(Decimal(value), places) == text


def test_ivig_order_hook_needs_an_intravenous_draft() -> None:
    draft = b.use(b.GAMUNEX, "draft", drafted=True)
    subcutaneous = b.use(b.GAMUNEX, "draft", drafted=True, subcutaneous=True)
    assert common.ivig_order_hook(b.record(ivig_uses=(draft,)), "order-sign")
    assert not common.ivig_order_hook(b.record(ivig_uses=(draft,)), "patient-view")
    assert not common.ivig_order_hook(b.record(ivig_uses=(subcutaneous,)), "order-select")
