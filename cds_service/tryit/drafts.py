"""The orders the try-it page can draft: a product from a short catalogue, and for IVIG a dose in
grams per day and a number of days.

The drafts are shaped like the ones EHRs send (``MedicationRequest`` status ``draft``, intent
``order``, coded medication, ``dosageInstruction`` with timing and route; for IVIG
``doseAndRate.doseQuantity`` in g and ``timing.repeat.count`` days, the fields rules.md "Ordered
IVIG dose" reads). The codes are ones the shipped ValueSets classify (``fhir_mappings/``), so a
drafted statin is a statin and a drafted IVIG is IVIG to the service, as they would be from an EHR.
Two entries are neither: a medication sent only as a reference the service cannot resolve (rules.md
"Medication of an order": the order hooks then say it could not be identified), and a draft with
nothing picked yet, as an order entry sends it on opening (no medication, no intent: rules.md r2
"Drafted", ignored without a card, the call still answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from cds_service.errors import BadRequest

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

STATIN = "statin"
IVIG = "ivig"
OTHER = "other"
UNFINISHED = "unfinished"
KIND_LABELS = {
    STATIN: "Statins",
    IVIG: "Immune globulin IV (10%)",
    OTHER: "Other",
    UNFINISHED: "Unfinished draft",
}

DRAFT_ID = "try-it-draft"
# Fixed so that a link reproduces the exact request (the draft is part of the request JSON).
DRAFT_FULL_URL = "urn:uuid:8d1c6f0e-4b7a-4c39-9a52-3e1f0b6d2c71"

# Input bounds of the page's dose fields. Wider than any sensible IVIG order (2 g/kg for 200 kg
# is 400 g) so that the rules, not the form, judge an implausible dose; small enough that a typo
# of several orders of magnitude is refused as input.
MAX_DOSE_G = Decimal("1000")
MAX_DAYS = 31


@dataclass(frozen=True)
class Product:
    key: str
    kind: str  # STATIN | IVIG | OTHER
    label: str  # what the page lists
    system: str | None
    code: str | None
    display: str
    text: str


PRODUCTS: dict[str, Product] = {
    p.key: p
    for p in (
        Product("atorvastatin-20", STATIN, "Atorvastatin 20 mg tablet", RXNORM, "617310",
                "atorvastatin 20 MG Oral Tablet", "atorvastatin 20 MG Oral Tablet"),
        Product("atorvastatin-40", STATIN, "Atorvastatin 40 mg tablet", RXNORM, "617311",
                "atorvastatin 40 MG Oral Tablet", "atorvastatin 40 MG Oral Tablet"),
        Product("simvastatin-40", STATIN, "Simvastatin 40 mg tablet", RXNORM, "198211",
                "simvastatin 40 MG Oral Tablet", "simvastatin 40 MG Oral Tablet"),
        Product("rosuvastatin-10", STATIN, "Rosuvastatin 10 mg tablet", RXNORM, "859747",
                "rosuvastatin calcium 10 MG Oral Tablet", "rosuvastatin calcium 10 MG Oral Tablet"),
        Product("pravastatin-40", STATIN, "Pravastatin 40 mg tablet", RXNORM, "904475",
                "pravastatin sodium 40 MG Oral Tablet", "pravastatin sodium 40 MG Oral Tablet"),
        Product("privigen", IVIG, "Privigen 10%", NDC, "44206-439",
                "Privigen (immune globulin intravenous, human) 10%", "Privigen 10% IV"),
        Product("gamunex-c", IVIG, "Gamunex-C 10%", NDC, "13533-800",
                "Gamunex-C (immune globulin injection, human) 10%", "Gamunex-C 10% IV"),
        Product("octagam", IVIG, "Octagam 10%", NDC, "68982-850",
                "Octagam 10% (immune globulin intravenous, human)", "Octagam 10% IV"),
        Product("gammagard-liquid", IVIG, "Gammagard Liquid 10%", NDC, "0944-2700",
                "Gammagard Liquid (immune globulin infusion, human) 10%",
                "Gammagard Liquid 10% IV"),
        Product("formulary-reference", OTHER,
                "Formulary item sent by reference only (Medication not in the request)",
                None, None, "Formulary item 48213", "Formulary item 48213"),
        Product("nothing-picked", UNFINISHED,
                "Nothing picked yet (order entry just opened: no medication, no intent)",
                None, None, "nothing picked yet", "nothing picked yet"),
    )
}
DEFAULT_STATIN = "atorvastatin-20"
DEFAULT_IVIG_DOSE_G = Decimal("35")
DEFAULT_IVIG_DAYS = 2


@dataclass(frozen=True)
class DraftSpec:
    """What the page lets a person change about the drafted order."""

    product: Product
    dose_g: Decimal | None = None  # IVIG only: grams per day
    days: int | None = None  # IVIG only

    def query(self) -> dict[str, str]:
        """The URL parameters that reproduce this draft."""
        params = {"product": self.product.key}
        if self.dose_g is not None:
            params["dose"] = _plain(self.dose_g)
        if self.days is not None:
            params["days"] = str(self.days)
        return params

    def describe(self) -> str:
        if self.product.kind == IVIG and self.dose_g is not None and self.days is not None:
            return f"{self.product.text} {_plain(self.dose_g)} g daily for {self.days} day(s)"
        return self.product.text


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


def parse_draft(
    product: str | None,
    dose: str | None,
    days: str | None,
    default: DraftSpec,
) -> DraftSpec:
    """The draft a request asks for; missing parts come from ``default`` (the example's own).

    Raises ``BadRequest`` (naming the parameter) on an unknown product or a dose or day count
    that is not a positive number within the page's bounds.
    """
    chosen = default.product
    if product:
        found = PRODUCTS.get(product)
        if found is None:
            raise BadRequest(f"unknown product {product!r}", expression="product")
        chosen = found
    if chosen.kind != IVIG:
        return DraftSpec(chosen)
    base_dose = default.dose_g if default.product.kind == IVIG else None
    base_days = default.days if default.product.kind == IVIG else None
    dose_g = _dose(dose) if dose else (base_dose or DEFAULT_IVIG_DOSE_G)
    day_count = _days(days) if days else (base_days or DEFAULT_IVIG_DAYS)
    return DraftSpec(chosen, dose_g, day_count)


def _dose(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        raise BadRequest("dose must be a number of grams", expression="dose") from None
    if not value.is_finite() or value <= 0 or value > MAX_DOSE_G:
        raise BadRequest(
            f"dose must be more than 0 and at most {MAX_DOSE_G} g per day", expression="dose"
        )
    # Two decimals are more than an infusion pump is set to; more digits are noise in the card.
    return value.quantize(Decimal("0.01")).normalize()


def _days(text: str) -> int:
    if not text.strip().isdigit():
        raise BadRequest("days must be a whole number", expression="days")
    value = int(text.strip())
    if not 1 <= value <= MAX_DAYS:
        raise BadRequest(f"days must be between 1 and {MAX_DAYS}", expression="days")
    return value


def spec_from_index(entry: Any, where: str) -> DraftSpec:
    """The ``draft`` member of an ``examples/index.json`` entry (``ValueError`` when invalid)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("product"), str):
        raise ValueError(f"{where}: draft must be an object with a product")
    product = PRODUCTS.get(entry["product"])
    if product is None:
        raise ValueError(f"{where}: unknown draft product {entry['product']!r}")
    if product.kind != IVIG:
        if "dose_g" in entry or "days" in entry:
            raise ValueError(f"{where}: dose_g and days apply to IVIG products only")
        return DraftSpec(product)
    try:
        return DraftSpec(product, _dose(str(entry["dose_g"])), _days(str(entry["days"])))
    except (KeyError, BadRequest) as exc:
        raise ValueError(f"{where}: an IVIG draft needs a valid dose_g and days ({exc})") from None


def draft_resource(spec: DraftSpec, patient_id: str, authored: date) -> dict[str, Any]:
    """The drafted ``MedicationRequest`` (R4) for ``spec``."""
    product = spec.product
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": DRAFT_ID,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored.isoformat(),
    }
    if product.kind == UNFINISHED:
        # What an order entry sends on opening (the CDS Hooks Sandbox's Rx View): R4 requires
        # intent and medication[x], and neither is there yet.
        del resource["intent"]
        return resource
    if product.system is None:
        # An EHR that keeps its formulary as Medication resources sends only the reference.
        resource["medicationReference"] = {
            "reference": f"Medication/{product.key}-48213",
            "display": product.display,
        }
    else:
        resource["medicationCodeableConcept"] = {
            "coding": [
                {"system": product.system, "code": product.code, "display": product.display}
            ],
            "text": product.text,
        }
    if product.kind == IVIG:
        assert spec.dose_g is not None and spec.days is not None
        resource["dosageInstruction"] = [
            {
                "text": f"{_plain(spec.dose_g)} g IV daily for {spec.days} day(s)",
                "timing": {
                    "repeat": {"count": spec.days, "frequency": 1, "period": 1, "periodUnit": "d"}
                },
                "route": {
                    "coding": [
                        {"system": SNOMED, "code": "47625008", "display": "Intravenous route"}
                    ]
                },
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": float(spec.dose_g) if spec.dose_g % 1 else int(spec.dose_g),
                            "unit": "g",
                            "system": UCUM,
                            "code": "g",
                        }
                    }
                ],
            }
        ]
    elif product.kind == STATIN:
        resource["dosageInstruction"] = [
            {
                "text": "1 tablet by mouth once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {
                    "coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]
                },
            }
        ]
    return resource
