"""The CDS services, each declared once.

Discovery (``GET /cds-services``), routing (``POST /cds-services/{id}`` dispatched on id and hook),
prefetch templates and fallback fetch, and the advisories each service runs all derive from the
``SERVICES`` tuple below. Nothing about a service is said anywhere else.

A service lists the rules it runs; which hooks a rule answers is the rule's own ``@rule``
declaration (``cds_service.advice``), so a service on a hook asks only those of its rules that
answer it. At start-up (``cds_service.catalogue``) every listed rule must be declared, every rule
must be run by some service on each hook it answers, and every prefetch template must be one the
service's hook can fill (``cds_service.hooks``).

Each service has its own id per hook (``statin-order-select`` for order-select,
``statin-order-check`` for order-sign). CDS Hooks 2.0 allows one id under several hooks, but the
CDS Hooks Sandbox keeps one service per id (the last), so its Rx View would reach none of our
order-select services: integrators test there first, so one id per hook.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.codes import LOINC
from cds_service.hooks import ORDER_SELECT, ORDER_SIGN, PATIENT_VIEW, HookName

# LOINC codes of every Observation the rules read (clinical-evidence.md §5.1, rules.md Definitions).
OBSERVATION_CODES: dict[str, tuple[str, ...]] = {
    "ck": ("2157-6",),
    "iga": ("2458-8",),
    "hmgcr": ("93493-5",),
    "weight": ("29463-7", "3141-9"),
    "height": ("8302-2",),
    "creatinine": ("2160-0", "14682-9"),
    "egfr": (
        "98979-8", "62238-1", "33914-3", "48642-3", "48643-1", "69405-9", "88293-6", "50384-7",
    ),
}

_OBSERVATION_CODE_PARAM = ",".join(
    f"{LOINC}|{code}" for codes in OBSERVATION_CODES.values() for code in codes
)

# The prefetch templates: few keys, each a FHIR search every EHR can run (2.0 tokens only).
PREFETCH_TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "observations": f"Observation?patient={{{{context.patientId}}}}&code={_OBSERVATION_CODE_PARAM}"
    "&_sort=-date",
    # rules.md r2: orders coded by medicationReference bring their Medications (search.mode
    # "include"), so prefetch gives the same cards as the fallback fetch (which asks the same).
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}"
    "&_include=MedicationRequest:medication",
    "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}"
    "&_include=MedicationAdministration:medication",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}"
    "&_include=MedicationStatement:medication",
    "conditions": "Condition?patient={{context.patientId}}",
}

ALL_RULES_STATIN = (
    "STAT-01", "STAT-02", "STAT-03", "STAT-04", "STAT-05", "STAT-06", "HMG-01", "HMG-02", "HMG-03",
)
# Not a rules.md rule: an order hook says when a drafted medication could not be identified
# (rules.md "Medication of an order"); declared on the statin service only, so it shows once.
ORDER_UNIDENTIFIED = "ORDER-UNIDENTIFIED"

ALL_RULES_IVIG = (
    "IGA-01", "IGA-02", "IGA-03", "DOSE-01", "DOSE-02", "DOSE-03", "DOSE-04",
    "SAFE-01", "SAFE-02", "SAFE-03", "CONT-01", "CONT-02", "CONT-03", "CONT-04",
)


@dataclass(frozen=True)
class ServiceDeclaration:
    id: str
    hook: HookName
    title: str
    description: str
    prefetch_keys: tuple[str, ...]
    # Rule ids this service runs; each is asked only on the hooks its @rule declares.
    rules: tuple[str, ...]
    usage_requirements: str | None = None

    @property
    def prefetch(self) -> dict[str, str]:
        return {key: PREFETCH_TEMPLATES[key] for key in self.prefetch_keys}


_ALL_KEYS = tuple(PREFETCH_TEMPLATES)
_STATIN_KEYS = (
    "patient", "observations", "medicationRequests", "medicationStatements", "conditions",
)

_STATIN_DESCRIPTION = (
    "Checks statin safety when an order is selected or signed: CK against the upper limit of "
    "normal (stop, repeat or continue), possible rhabdomyolysis, statin-associated autoimmune "
    "myopathy (anti-HMGCR) and statin rechallenge after a CK rise; flags persistent CK elevation "
    "after withdrawal for anti-HMGCR testing."
)
_IVIG_DESCRIPTION = (
    "Checks an intravenous immunoglobulin (IVIG) order: serum IgA before the first dose, the dose "
    "by dosing weight (ideal, adjusted or actual) with the arithmetic, the 2 g/kg per 4-week "
    "maximum, renal function and thrombosis risk, and continuation once CK is in remission."
)

SERVICES: tuple[ServiceDeclaration, ...] = (
    ServiceDeclaration(
        id="myopathy-review",
        hook=PATIENT_VIEW,
        title="Statin myopathy and IVIG review",
        description=(
            "On chart open: CK trend against the upper limit of normal for patients on a statin, "
            "CK still raised after statin withdrawal (anti-HMGCR testing), anti-HMGCR positive "
            "myopathy not yet treated, IgA deficiency on IVIG, IVIG continuation, taper or "
            "discontinuation in remission, overdue CK monitoring and relapse after IVIG."
        ),
        prefetch_keys=_ALL_KEYS,
        rules=ALL_RULES_STATIN + ("IGA-02", "CONT-01", "CONT-02", "CONT-03", "CONT-04"),
    ),
    ServiceDeclaration(
        id="statin-order-select",
        hook=ORDER_SELECT,
        title="Statin and CK check (order select)",
        description=_STATIN_DESCRIPTION,
        prefetch_keys=_STATIN_KEYS,
        rules=ALL_RULES_STATIN + (ORDER_UNIDENTIFIED,),
    ),
    ServiceDeclaration(
        id="statin-order-check",
        hook=ORDER_SIGN,
        title="Statin and CK check (order sign)",
        description=_STATIN_DESCRIPTION,
        prefetch_keys=_STATIN_KEYS,
        rules=ALL_RULES_STATIN + (ORDER_UNIDENTIFIED,),
    ),
    ServiceDeclaration(
        id="ivig-order-select",
        hook=ORDER_SELECT,
        title="IVIG order check (order select)",
        description=_IVIG_DESCRIPTION,
        prefetch_keys=_ALL_KEYS,
        rules=ALL_RULES_IVIG,
    ),
    ServiceDeclaration(
        id="ivig-order-check",
        hook=ORDER_SIGN,
        title="IVIG order check (order sign)",
        description=_IVIG_DESCRIPTION,
        prefetch_keys=_ALL_KEYS,
        rules=ALL_RULES_IVIG,
    ),
)


def services_for_hook(hook: str) -> tuple[ServiceDeclaration, ...]:
    return tuple(s for s in SERVICES if s.hook == hook)


def find_service(service_id: str, hook: str) -> ServiceDeclaration | None:
    for service in SERVICES:
        if service.id == service_id and service.hook == hook:
            return service
    return None


def service_ids() -> frozenset[str]:
    return frozenset(s.id for s in SERVICES)
