"""Each package's public names are its ``__init__``'s ``__all__`` (as httpx pins its own): a name
added, removed or renamed shows here, and every listed name exists."""

from __future__ import annotations

import importlib

import pytest

PUBLIC: dict[str, list[str]] = {
    "cds_service.advice": [
        "EVALUATORS",
        "INDICATOR_ORDER",
        "RULES",
        "Advice",
        "Area",
        "Evaluator",
        "Fact",
        "Indicator",
        "RuleBook",
        "RuleDeclaration",
        "Suggestion",
        "area_of",
        "evaluate",
        "rule",
    ],
    "cds_service.advice.registry": [
        "Area",
        "Evaluator",
        "RuleBook",
        "RuleDeclaration",
        "answers",
        "area_of",
        "declaration",
        "rule",
    ],
    "cds_service.cards_render": [
        "ADVICE_SYSTEM",
        "CARDS_DIR_ENV",
        "OVERRIDE_REASON_SYSTEM",
        "CardRenderError",
        "CardTemplate",
        "OverrideReason",
        "Source",
        "Templates",
        "load_templates",
        "render",
        "render_card",
    ],
    "cds_service.catalogue": ["Catalogue"],
    "cds_service.codes": ["FHIR_ID", "LOINC", "SNOMED", "UCUM"],
    "cds_service.demo": ["UnsupportedSearch", "build_prefetch", "search"],
    "cds_service.fhir": ["EgressPolicy", "FetchStats", "FhirClient", "FhirData", "gather"],
    "cds_service.hooks": [
        "HOOKS",
        "ORDER_HOOKS",
        "ORDER_SELECT",
        "ORDER_SIGN",
        "PATIENT_VIEW",
        "Drafted",
        "HookDeclaration",
        "HookName",
        "Hooks",
    ],
    "cds_service.migrations": ["BASELINE", "HEAD", "current", "head", "needs_upgrade", "upgrade"],
    "cds_service.protocol": ["request_schema", "validate"],
    "cds_service.record": ["CkValue", "LabValue", "Medication", "MedicationUse", "PatientRecord"],
    "cds_service.tryit": [
        "View",
        "context_for",
        "install_tryit",
        "load_examples",
        "request_body",
        "requests_for",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == PUBLIC[package]
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
