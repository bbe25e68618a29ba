"""fhir.terminology with the shipped fhir_mappings: statin, IVIG, estrogen, subcutaneous route,
observation kinds and condition classes (rules.md Definitions), and the loader's refusals."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cds_service.errors import ConfigurationError
from cds_service.fhir import terminology
from cds_service.fhir.terminology import (
    classify_medication,
    condition_kinds,
    is_subcutaneous,
    load_valuesets,
    normalise_ndc,
    observation_kind,
)
from cds_service.services import OBSERVATION_CODES

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
NDC = "http://hl7.org/fhir/sid/ndc"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"


def concept(system: str | None = None, code: str | None = None, display: str | None = None,
            text: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {}
    if system or code or display:
        coding: dict[str, Any] = {}
        if system:
            coding["system"] = system
        if code:
            coding["code"] = code
        if display:
            coding["display"] = display
        c["coding"] = [coding]
    if text:
        c["text"] = text
    return c


# --- statins -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["83367", "36567", "301542", "42463", "6472", "41127", "861634"]
)
def test_statin_by_rxnorm_ingredient(code: str) -> None:
    med = classify_medication(concept(RX, code))
    assert med.is_statin and not med.matched_by_name
    assert not med.is_ivig and not med.is_estrogen
    assert med.codes == (f"{RX}|{code}",)


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ("617310", "SCD atorvastatin 20 MG Oral Tablet"),
        ("198211", "SCD simvastatin 40 MG Oral Tablet"),
        ("617314", "SBD atorvastatin 10 MG [Lipitor]"),
        ("262095", "SBD atorvastatin 80 MG [Lipitor]"),
        ("476350", "combination ezetimibe/simvastatin (Vytorin)"),
        ("543354", "combination SBD Vytorin"),
        ("597967", "combination amlodipine/atorvastatin (Caduet)"),
        ("2535745", "combination ezetimibe/rosuvastatin (Statin Grouper)"),
        ("904475", "SCD pravastatin sodium 40 MG (Statin Grouper)"),
    ],
)
def test_statin_by_rxnorm_product(code: str, what: str) -> None:
    # No display, no text: only the code can have decided.
    med = classify_medication(concept(RX, code))
    assert med.is_statin, what
    assert not med.matched_by_name


@pytest.mark.parametrize("code", ["C10AA05", "C10AA01", "C10AA06", "C10AA", "C10BA02", "C10BX03"])
def test_statin_by_atc_group_and_prefix(code: str) -> None:
    med = classify_medication(concept(ATC, code))
    assert med.is_statin and not med.matched_by_name


@pytest.mark.parametrize("code", ["C10AX09", "C10AD02", "C10A", "C10", "C09AA02"])
def test_not_a_statin_by_atc(code: str) -> None:
    assert not classify_medication(concept(ATC, code)).is_statin


def test_statin_system_given_as_hl7_oid() -> None:
    assert classify_medication(concept("urn:oid:2.16.840.1.113883.6.88", "617311")).is_statin


def test_code_system_url_with_a_trailing_slash_still_matches() -> None:
    # Mutation-run gap: a system written "http://.../rxnorm/" is the same code system.
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm/"
    assert classify_medication(concept(rxnorm, "617311")).is_statin
    assert classify_medication(concept(ATC + "/", "J06BA02")).is_ivig
    assert classify_medication(concept(f" {NDC}/ ", "13533-800-20")).is_ivig
    assert condition_kinds(concept(ICD + "/", "I82.401")) == ("vte",)
    assert condition_kinds(concept(SCT + "/", "44054006")) == ("diabetes",)
    # ...but a different path is a different system
    assert not classify_medication(concept(ATC + "/x", "J06BA02")).is_ivig


@pytest.mark.parametrize(
    "text",
    [
        "Lipitor 20 mg tablet",
        "ZOCOR 40MG TAB",
        "crestor",
        "Atorvastatin calcium 10 MG Oral Capsule",
        "Caduet 5/10",
        "Livalo 2 mg",
        "Zypitamag",
        "Altoprev ER",
        "Vytorin 10/40",
    ],
)
def test_statin_by_name_is_flagged(text: str) -> None:
    med = classify_medication(concept(text=text))
    assert med.is_statin
    assert med.matched_by_name
    assert med.display == text


def test_statin_name_in_a_coding_display_with_an_unknown_code() -> None:
    med = classify_medication(concept(RX, "999999999", display="Pravachol 40 MG Oral Tablet"))
    assert med.is_statin and med.matched_by_name


def test_code_match_is_not_flagged_as_name_match() -> None:
    med = classify_medication(concept(RX, "617311", display="atorvastatin 40 MG Oral Tablet",
                                      text="Lipitor"))
    assert med.is_statin and not med.matched_by_name


def test_no_name_flag_when_any_code_matched() -> None:
    # A statin code with an estrogen name in the text: the code decided, so no "matched by name".
    med = classify_medication(concept(RX, "617311", text="atorvastatin; estradiol"))
    assert med.is_statin and med.is_estrogen
    assert not med.matched_by_name


@pytest.mark.parametrize(
    "text", ["Lipitorx", "xLipitor", "Lipitor2", "Simvastatinum", "Mevacorine", "statin", "Zetia"]
)
def test_statin_name_must_be_a_whole_word(text: str) -> None:
    assert not classify_medication(concept(text=text)).is_statin


def test_not_a_statin() -> None:
    med = classify_medication(concept(RX, "341248", display="ezetimibe 10 MG Oral Tablet"))
    assert not (med.is_statin or med.is_ivig or med.is_estrogen)
    assert not med.matched_by_name


def test_statin_medication_resource_by_ingredient() -> None:
    medication = {
        "resourceType": "Medication",
        "code": {"coding": [{"system": "http://example.org/formulary", "code": "F-1"}],
                 "text": "House brand tablet"},
        "ingredient": [{"itemCodeableConcept": concept(RX, "83367")}],
    }
    med = classify_medication(None, medication)
    assert med.is_statin and not med.matched_by_name
    assert med.display == "House brand tablet"
    assert f"{RX}|83367" in med.codes


def test_statin_medication_resource_ingredient_by_name() -> None:
    medication = {"resourceType": "Medication",
                  "ingredient": [{"itemCodeableConcept": {"text": "rosuvastatin calcium"}}]}
    med = classify_medication(None, medication)
    assert med.is_statin and med.matched_by_name


# --- IVIG --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ndc", "normalised"),
    [
        ("13533-800", "13533-0800"),  # product NDC, 5-3
        ("13533-800-20", "13533-0800"),  # 5-3-2
        ("13533-0800-20", "13533-0800"),  # 11-digit 5-4-2, hyphenated
        ("13533080020", "13533-0800"),  # 11-digit, no hyphens
        ("0944-2700-02", "00944-2700"),  # 4-4-2
        ("00944270002", "00944-2700"),
        ("69800-6503-1", "69800-6503"),  # 5-4-1
        ("0069-6550", "00069-6550"),  # product NDC, 4-4
        # rules.md r2: normalised to 11-digit 5-4-2 first, so leading zeros do not matter
        ("944-2700-2", "00944-2700"),
        ("000944-02700-002", "00944-2700"),
        ("44206-0439", "44206-0439"),
        ("44206-439", "44206-0439"),
        ("442060439", "44206-0439"),  # 9 digits without hyphens: labeler-product 5-4
    ],
)
def test_ivig_by_ndc_in_every_layout(ndc: str, normalised: str) -> None:
    assert normalise_ndc(ndc) == normalised
    med = classify_medication(concept(NDC, ndc))
    assert med.is_ivig and not med.matched_by_name
    assert not med.is_statin


@pytest.mark.parametrize(
    "ndc", ["1353380020", "13533-801", "13533-8000-201", "13533-08000-20", "abc-def", "1-2-3"]
)
def test_ndc_not_ivig_or_ambiguous(ndc: str) -> None:
    # 10 digits without hyphens could be 4-4-2, 5-3-2 or 5-4-1: not guessed.
    assert not classify_medication(concept(NDC, ndc)).is_ivig


def test_ivig_by_atc_and_rxnorm() -> None:
    assert classify_medication(concept(ATC, "J06BA02")).is_ivig
    assert classify_medication(concept(RX, "1426680")).is_ivig
    assert not classify_medication(concept(ATC, "J06BA01")).is_ivig  # for extravascular use


@pytest.mark.parametrize(
    "brand",
    ["Gamunex-C", "Privigen", "Octagam", "Gammagard", "Panzyga", "Bivigam", "Flebogamma",
     "Gammaplex", "Gammaked", "Asceniv"],
)
def test_ivig_by_brand_name_is_flagged(brand: str) -> None:
    med = classify_medication(concept(text=f"{brand} 10 g IV"))
    assert med.is_ivig and med.matched_by_name


def test_ivig_brand_whole_word() -> None:
    assert not classify_medication(concept(text="Privigenx 10 g")).is_ivig
    assert not classify_medication(concept(text="Gamunex-CX")).is_ivig


@pytest.mark.parametrize(
    ("coded", "expected"),
    [
        (concept(NDC, "68982-840"), Decimal("0.05")),  # Octagam 5% by NDC
        (concept(NDC, "68982-850-01"), Decimal("0.1")),  # Octagam 10% by NDC
        (concept(NDC, "0944-2656"), None),  # Gammagard S/D: strength depends on reconstitution
        (concept(text="Privigen"), Decimal("0.1")),  # single-strength brand
        (concept(text="Octagam"), None),  # 5% and 10% exist
        (concept(ATC, "J06BA02", text="Octagam 5% solution"), Decimal("0.05")),
        (concept(ATC, "J06BA02", text="IG 5% or 10%"), None),  # two strengths named: unknown
    ],
)
def test_ivig_concentration(coded: dict[str, Any], expected: Decimal | None) -> None:
    med = classify_medication(coded)
    assert med.is_ivig
    assert med.concentration_g_per_ml == expected


def test_ivig_concentration_from_medication_ingredient_strength() -> None:
    medication = {
        "resourceType": "Medication",
        "code": concept(ATC, "J06BA02", text="Flebogamma DIF"),
        "ingredient": [{
            "itemCodeableConcept": {"text": "immune globulin"},
            "strength": {"numerator": {"value": 10, "system": "http://unitsofmeasure.org",
                                       "code": "g"},
                         "denominator": {"value": 100, "system": "http://unitsofmeasure.org",
                                         "code": "mL"}},
        }],
    }
    med = classify_medication(None, medication)
    assert med.is_ivig and not med.matched_by_name
    assert med.concentration_g_per_ml == Decimal("0.1")


def test_non_ivig_has_no_concentration() -> None:
    assert classify_medication(concept(text="Lipitor 10%")).concentration_g_per_ml is None


# --- subcutaneous route ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dosage",
    [
        {"route": concept(SCT, "34206005")},
        {"route": {"text": "SC"}},
        {"route": {"text": "sq"}},
        {"text": "10 g subcut weekly"},
        {"text": "Give SUBCUTANEOUS infusion"},
        {"route": {"text": "Subcut"}, "text": "IV"},
    ],
)
def test_subcutaneous_route(dosage: dict[str, Any]) -> None:
    assert is_subcutaneous([dosage])


@pytest.mark.parametrize(
    "dosage",
    [
        {"route": concept(SCT, "47625008", display="Intravenous route")},
        {"route": {"text": "IV"}},
        {"text": "35 g IV over 4 hours, discard remainder"},
        {"text": "check SCr before each dose"},  # SC must be a whole word
        {},
        # rules.md "IVIG", as written: only SNOMED 34206005, route.text and the dosage text
        # count, and only the words SC, SQ, subcut, subcutaneous.
        {"route": concept("http://example.org/routes", "R9", display="Subcutaneous")},
        {"text": "infuse subcutaneously"},
    ],
)
def test_not_subcutaneous(dosage: dict[str, Any]) -> None:
    assert not is_subcutaneous([dosage])


def test_subcutaneous_in_any_dosage() -> None:
    assert is_subcutaneous([{"text": "IV"}, {"route": {"text": "SC"}}])
    assert not is_subcutaneous([])


# --- estrogen ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["G03CA03", "G03AA07", "G03FA01", "G03CX01"])
def test_estrogen_by_atc(code: str) -> None:
    med = classify_medication(concept(ATC, code))
    assert med.is_estrogen and not med.matched_by_name


@pytest.mark.parametrize(
    "text",
    ["estradiol 1 mg oral tablet", "Ethinyl Estradiol / Levonorgestrel", "conjugated estrogens",
     "Estropipate 0.75 mg", "norethindrone and mestranol"],
)
def test_estrogen_by_ingredient_name(text: str) -> None:
    med = classify_medication(concept(text=text))
    assert med.is_estrogen and med.matched_by_name


@pytest.mark.parametrize("text", ["progesterone 100 mg", "estradiolx", "G03 pack"])
def test_not_estrogen(text: str) -> None:
    assert not classify_medication(concept(text=text)).is_estrogen
    assert not classify_medication(concept(ATC, "G03DA04")).is_estrogen  # progesterone


# --- observations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code"), [(k, c) for k, codes in OBSERVATION_CODES.items() for c in codes]
)
def test_observation_kind_for_every_loinc_code(kind: str, code: str) -> None:
    assert observation_kind(concept(LOINC, code)) == kind


def test_observation_kind_needs_loinc() -> None:
    assert observation_kind(concept(LOINC, "2093-3")) is None  # cholesterol
    assert observation_kind(concept("http://example.org/lab", "2157-6")) is None
    assert observation_kind({"text": "CK"}) is None
    assert observation_kind(None) is None
    two = {"coding": [{"system": "http://example.org/lab", "code": "CK"},
                      {"system": LOINC, "code": "2157-6"}]}
    assert observation_kind(two) == "ck"


# --- conditions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "coded",
    [
        concept(ICD, "E11.9"),
        concept(ICD, "E1065"),
        concept(ICD, "E08.22"),
        concept(ICD, "E13"),
        concept(SCT, "44054006"),
        concept(SCT, "73211009"),
        concept(SCT, "46635009"),
        concept(text="Type 2 diabetes mellitus without complications"),
        # rules.md r2: the whole word "diabetes" or "diabetic" in the text
        concept(text="Diabetic nephropathy"),
        concept(text="DIABETES"),
        concept(text="Gestational diabetes"),
        concept(SCT, "1234", display="diabetic foot ulcer"),
        # each occurrence on its own: an excluded phrase does not hide a real one
        concept(text="Diabetes insipidus; type 1 diabetes"),
        concept(text="pre-diabetes, now diabetes mellitus"),
    ],
)
def test_diabetes(coded: dict[str, Any]) -> None:
    assert condition_kinds(coded) == ("diabetes",)


@pytest.mark.parametrize(
    "coded",
    [
        concept(ICD, "E14.9"),  # not ICD-10-CM
        concept(ICD, "R73.03", display="Prediabetes"),
        concept(text="Diabetes insipidus"),
        concept(ICD, "E23.2"),
        # rules.md r2: not prediabetes / pre-diabetes, not diabetes insipidus, whole words only
        concept(text="Prediabetes"),
        concept(text="Pre-diabetes"),
        concept(text="pre diabetes"),
        concept(text="Nephrogenic diabetes insipidus"),
        concept(text="Antidiabetic drug monitoring"),
        concept(text="Diabetics clinic"),
    ],
)
def test_not_diabetes(coded: dict[str, Any]) -> None:
    assert "diabetes" not in condition_kinds(coded)


@pytest.mark.parametrize(
    "coded",
    [
        concept(ICD, "I26.99"),
        concept(ICD, "I80.10"),
        concept(ICD, "I80.209"),
        concept(ICD, "I82.401"),
        concept(SCT, "128053003"),
        concept(SCT, "59282003"),
        concept(SCT, "429098002"),
        concept(text="Deep vein thrombosis of left leg"),
        concept(text="Pulmonary embolism"),
        concept(text="history of DVT"),
        # rules.md r2: "venous thrombo", "vein thrombosis", "thromboembolism", "pulmonary embol"
        # in any case; DVT, VTE, PE as upper-case whole words; the display counts as text
        concept(text="Deep venous thrombosis"),
        concept(text="VENOUS THROMBOSIS, left arm"),
        concept(text="Thromboembolism"),
        concept(text="pulmonary emboli, bilateral"),
        concept(text="PE 2019"),
        concept(text="VTE"),
        concept(text="DVT/PE"),
        concept("http://example.org/problems", "X1", display="Portal vein thrombosis"),
    ],
)
def test_venous_thromboembolism(coded: dict[str, Any]) -> None:
    assert condition_kinds(coded) == ("vte",)


@pytest.mark.parametrize(
    ("code", "kinds"),
    [
        # Mutation-run gap: ICD-10-CM codes are often sent without the dot.
        ("I824", ("vte",)),
        ("I82401", ("vte",)),
        ("i26.99", ("vte",)),
        ("I2699", ("vte",)),
        ("E119", ("diabetes",)),
        ("e11.9", ("diabetes",)),
        ("I823", ()),  # renal vein: not in the list, dot or no dot
    ],
)
def test_icd10cm_code_without_the_dot_or_in_lower_case(code: str, kinds: tuple[str, ...]) -> None:
    assert condition_kinds(concept(ICD, code)) == kinds


@pytest.mark.parametrize(
    "coded",
    [
        concept(ICD, "I82.3"),  # renal vein: not in rules.md's code list
        concept(ICD, "I80.0"),  # superficial vessels
        concept(text="Arterial embolism of the leg"),
        concept(text="Cerebral thrombosis"),
        # rules.md r2: none of the listed phrases (the letter of the Definition)
        concept(text="Thrombosis of the femoral vein"),
        # upper case only for the abbreviations, whole words only
        concept(text="history of dvt"),
        concept(text="pe"),
        concept(text="Pes planus"),
        concept(text="PEG tube"),
        concept(text="DVTs"),
        # "arterial" anywhere in the text excludes a text match, in any part of it
        concept(text="Arterial thromboembolism"),
        concept("http://example.org/problems", "X2", display="Thromboembolism", text="ARTERIAL"),
    ],
)
def test_not_venous_thromboembolism(coded: dict[str, Any]) -> None:
    assert "vte" not in condition_kinds(coded)


@pytest.mark.parametrize(
    "coded",
    [
        concept(ICD, "G72.49", display="Anti-HMGCR myopathy"),
        concept(text="Immune-mediated necrotizing myopathy"),
        concept(text="Necrotising myopathy"),
        concept(text="Statin-associated necrotizing  myopathy"),
        concept(SCT, "1234", display="HMGCR antibody positive myositis"),
    ],
)
def test_hmgcr_myopathy_by_text(coded: dict[str, Any]) -> None:
    assert condition_kinds(coded) == ("hmgcr-myopathy",)


@pytest.mark.parametrize(
    "coded",
    [
        concept(ICD, "G72.49", display="Other inflammatory and immune myopathies, NEC"),
        concept(text="Necrotizing fasciitis"),
        concept(text="Polymyositis"),
        # rules.md: the text must contain "necrotizing"/"necrotising myopathy"; words between
        # them are not read, so two conditions in one text do not make one.
        concept(text="Necrotizing fasciitis; steroid myopathy"),
        concept(text="Necrotizing pancreatitis with myopathy"),
        concept(text="Necrotizing autoimmune myopathy"),
    ],
)
def test_not_hmgcr_myopathy(coded: dict[str, Any]) -> None:
    assert condition_kinds(coded) == ()


# --- the mapping files -------------------------------------------------------------------------


def test_shipped_valuesets_are_valid_and_canonical() -> None:
    from fhir.resources.R4B.valueset import ValueSet

    files = sorted(terminology.MAPPINGS_DIR.glob("ValueSet-*.json"))
    assert {p.stem.removeprefix("ValueSet-") for p in files} == set(
        terminology.REQUIRED_VALUESETS
    )
    for path in files:
        raw = json.loads(path.read_text(encoding="utf-8"))
        ValueSet.parse_obj(raw)
        assert raw["url"] == f"https://myocds.dev/fhir/ValueSet/{raw['id']}"
        assert raw["status"] == "active"


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    for path in terminology.MAPPINGS_DIR.glob("ValueSet-*.json"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _edit(directory: Path, name: str, change: Any) -> None:
    path = directory / f"ValueSet-{name}.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_loader_accepts_a_copy(mappings: Path) -> None:
    assert set(load_valuesets(mappings)) == set(terminology.REQUIRED_VALUESETS)


def test_loader_refuses_a_missing_valueset(mappings: Path) -> None:
    (mappings / "ValueSet-ivig.json").unlink()
    with pytest.raises(ConfigurationError, match="missing ValueSet.*ivig"):
        load_valuesets(mappings)


def test_loader_refuses_broken_json(mappings: Path) -> None:
    (mappings / "ValueSet-statin.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="ValueSet-statin.json"):
        load_valuesets(mappings)


def test_loader_refuses_invalid_fhir(mappings: Path) -> None:
    _edit(mappings, "statin", lambda raw: raw.pop("status"))  # status is required
    with pytest.raises(ConfigurationError, match="not a valid FHIR R4 ValueSet"):
        load_valuesets(mappings)


def test_loader_refuses_a_filter_it_cannot_evaluate(mappings: Path) -> None:
    def snomed_is_a(raw: dict[str, Any]) -> None:
        raw["compose"]["include"].append(
            {"system": SCT, "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}
        )

    _edit(mappings, "diabetes", snomed_is_a)
    with pytest.raises(ConfigurationError, match="cannot be evaluated locally"):
        load_valuesets(mappings)


def test_loader_refuses_a_bad_regex(mappings: Path) -> None:
    def bad(raw: dict[str, Any]) -> None:
        raw["extension"][0]["extension"][0]["valueString"] = "(unclosed"

    _edit(mappings, "hmgcr-myopathy", bad)
    with pytest.raises(ConfigurationError, match="regex"):
        load_valuesets(mappings)


def test_loader_refuses_a_foreign_canonical(mappings: Path) -> None:
    _edit(mappings, "estrogen", lambda raw: raw.update(url="http://example.org/ValueSet/x"))
    with pytest.raises(ConfigurationError, match="url must start with"):
        load_valuesets(mappings)


def test_loader_refuses_a_bad_concentration(mappings: Path) -> None:
    def bad(raw: dict[str, Any]) -> None:
        raw["compose"]["include"][0]["concept"][0]["extension"][0]["valueQuantity"]["value"] = 10

    _edit(mappings, "ivig", bad)
    with pytest.raises(ConfigurationError, match="concentration"):
        load_valuesets(mappings)


def test_loader_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_valuesets(tmp_path / "nowhere")


def test_text_prefilter_finds_exactly_the_texts_some_rule_matches() -> None:
    # CompiledValueSet.any_text shares one pair of word boundaries among the whole-word names:
    # on any text it must say "some rule matches" exactly when one rule's own pattern does
    # (text_rule skips the rules when it says no). Seeded random texts built from every shipped
    # name, cut, glued to letters, digits, underscores, hyphens, case-changed, plus the regex
    # rules of a ValueSet that has both kinds.
    import random
    import re

    rng = random.Random(1414)
    valuesets = dict(terminology.VALUESETS)
    mixed = terminology._compile(
        {
            "url": terminology.VALUESET_BASE + "mixed",
            "extension": [
                {"url": terminology.TEXT_MATCH_URL, "extension": [
                    {"url": "text", "valueString": name}, {"url": "match", "valueCode": match}]}
                for name, match in (("Gamunex-C", "word"), (r"IG\s?IV", "regex"),
                                    ("Privigen", "word"), (r"^immune", "regex"))
            ],
        }
    )
    valuesets["mixed"] = mixed
    names = [rule.label for vs in valuesets.values() for rule in vs.texts]
    glue = ["", " ", "-", "_", "x", "7", "é", "(", ")", "/", "  ", ".", "ß", "İ"]

    def text() -> str:
        pieces = []
        for _ in range(rng.randrange(1, 4)):
            name = rng.choice(names)
            if rng.random() < 0.3:
                cut = rng.randrange(len(name) + 1)
                name = name[:cut] if rng.random() < 0.5 else name[cut:]
            if rng.random() < 0.3:
                name = name.upper() if rng.random() < 0.5 else name.swapcase()
            pieces.append(rng.choice(glue) + name + rng.choice(glue))
        return "".join(pieces)

    for vs in valuesets.values():
        for _ in range(400):
            sample = text()
            some_rule = any(rule.pattern.search(sample) for rule in vs.texts)
            assert bool(vs.any_text.search(sample)) is some_rule, (vs.url, sample)
    assert mixed.any_text.search("IGIV 10%") and mixed.text_rule(["Immune globulin"]) is not None
    assert re.search(r"\(\?<!", mixed.any_text.pattern)  # the shared word boundary is in use
