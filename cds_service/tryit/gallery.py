"""The card review gallery (``GET /try/rules``): every rule with its conditions in plain words, its
settings and their current values, its sources, and the card it gives for each example patient.

Where the pieces come from, so nothing is said twice:
- the rules, their short names and their conditions in plain words: the advice CodeSystem
  (``fhir_mappings/CodeSystem-myocds-advice.json``, one concept per rule with a ``definition``);
- hooks, indicators, sources, suggestion labels and override reasons: the card templates
  (``cards/<RULE>.json``) and ``cards/sources.json``, as the service loaded them at start-up;
- the settings: ``RULE_SETTINGS`` below names which ``MYOCDS_*`` settings each rule reads (the
  values are the running service's ``Settings``);
- the cards: each example patient run in this process on its own hook and draft through the
  service's steps (``tryit.inprocess``), so the gallery is one page load, not a hundred HTTP calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.cards_render import Source, Templates
from cds_service.cards_render.templates import ADVICE_CODESYSTEM, DEFAULT_MAPPINGS_DIR
from cds_service.policy import SitePolicy
from cds_service.settings import ClinicalSettings, Settings
from cds_service.tryit.examples import Example, View
from cds_service.tryit.inprocess import run_view

# The environment variable of each clinical setting (README "Settings").
SETTING_ENV: dict[str, str] = {
    "recent_days": "MYOCDS_RECENT_DAYS",
    "ck_uln_male": "MYOCDS_CK_ULN_MALE",
    "ck_uln_female": "MYOCDS_CK_ULN_FEMALE",
    "ck_uln_other": "MYOCDS_CK_ULN_OTHER",
    "hmg_withdrawal_days": "MYOCDS_HMG_WITHDRAWAL_DAYS",
    "hmg_early_days": "MYOCDS_HMG_EARLY_DAYS",
    "ivig_dosing_weight": "MYOCDS_IVIG_DOSING_WEIGHT",
    "weight_recent_days": "MYOCDS_WEIGHT_RECENT_DAYS",
    "renal_recent_days": "MYOCDS_RENAL_RECENT_DAYS",
    "egfr_threshold": "MYOCDS_EGFR_THRESHOLD",
    "ck_monitor_early_days": "MYOCDS_CK_MONITOR_EARLY_DAYS",
    "ck_monitor_phase_days": "MYOCDS_CK_MONITOR_PHASE_DAYS",
    "ck_monitor_late_days": "MYOCDS_CK_MONITOR_LATE_DAYS",
    "ck_monitor_horizon_days": "MYOCDS_CK_MONITOR_HORIZON_DAYS",
}
SETTING_MEANING: dict[str, str] = {
    "recent_days": "a result counts as recent within this many days",
    "ck_uln_male": "CK upper limit of normal (U/L) for men when the lab gives none",
    "ck_uln_female": "CK upper limit of normal (U/L) for women when the lab gives none",
    "ck_uln_other": "CK upper limit of normal (U/L) for other or unknown sex",
    "hmg_withdrawal_days": "days after the statin stop before anti-HMGCR testing is advised",
    "hmg_early_days": "start of the early-flag window after the statin stop (days)",
    "ivig_dosing_weight": "IVIG dosing weight: ideal, adjusted or actual",
    "weight_recent_days": "a weight counts for dosing when this recent (days)",
    "renal_recent_days": "creatinine or eGFR needed within this many days",
    "egfr_threshold": "eGFR below this (mL/min/1.73m²) is a renal risk",
    "ck_monitor_early_days": "after the last IVIG: a CK wanted at least this often (days) at first",
    "ck_monitor_phase_days": "how long (days after the last IVIG) the first interval applies",
    "ck_monitor_late_days": "after that phase: a CK wanted at least this often (days)",
    "ck_monitor_horizon_days": "CK monitoring is watched this many days after the last IVIG",
}
_CK_MONITOR = (
    "ck_monitor_early_days",
    "ck_monitor_phase_days",
    "ck_monitor_late_days",
    "ck_monitor_horizon_days",
)
_CK_ULN = ("ck_uln_male", "ck_uln_female", "ck_uln_other")
_DOSING = ("ivig_dosing_weight", "weight_recent_days")

# Which settings each rule reads (rules.md: the "(setting)" numbers of its row and of the
# Definitions it uses). Every CK ×ULN judgement reads the sex defaults for a CK without a range.
RULE_SETTINGS: dict[str, tuple[str, ...]] = {
    "STAT-01": ("recent_days", *_CK_ULN),
    "STAT-02": ("recent_days", *_CK_ULN),
    "STAT-03": ("recent_days", *_CK_ULN),
    "STAT-04": ("recent_days", *_CK_ULN),
    "STAT-05": (),
    "STAT-06": _CK_ULN,
    "HMG-01": ("hmg_withdrawal_days", *_CK_ULN),
    "HMG-02": ("hmg_early_days", "hmg_withdrawal_days", *_CK_ULN),
    "HMG-03": (),
    "IGA-01": (),
    "IGA-02": (),
    "IGA-03": (),
    "DOSE-01": _DOSING,
    "DOSE-02": _DOSING,
    "DOSE-03": _DOSING,
    "DOSE-04": _DOSING,
    "SAFE-01": ("renal_recent_days",),
    "SAFE-02": ("egfr_threshold",),
    "SAFE-03": (),
    "CONT-01": _CK_ULN,
    "CONT-02": _CK_MONITOR,
    "CONT-03": _CK_ULN,
    "CONT-04": _CK_ULN,
    "ORDER-UNIDENTIFIED": (),
}


@dataclass(frozen=True)
class SettingValue:
    name: str
    env: str
    meaning: str
    value: str
    default: str
    # Each site (issuers file) that sets its own value: (site, value) (issue 15).
    sites: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> bool:
        return self.value != self.default


@dataclass(frozen=True)
class Firing:
    example: Example
    service_id: str
    card: Mapping[str, Any]

    @property
    def query(self) -> dict[str, str]:
        """The try-it page's URL parameters for the view that gave this card."""
        return View(self.example, self.example.hook, self.example.draft).query()


@dataclass
class RuleEntry:
    rule: str
    display: str
    definition: str
    hooks: tuple[str, ...]
    indicators: tuple[str, ...]
    sources: tuple[Source, ...]
    settings: tuple[SettingValue, ...]
    suggestions: tuple[str, ...]
    override_reasons: tuple[str, ...]
    local_protocol: bool = False  # supported by seeds only (rules.md r2)
    version: str | None = None  # the rule catalogue (issue 15): version and review status
    status: str = "active"
    # Sites (issuers file) that switched this rule off.
    disabled_at: tuple[str, ...] = ()
    firings: list[Firing] = field(default_factory=list)

    @property
    def covered(self) -> bool:
        return bool(self.firings)


def advice_concepts(mappings_dir: Path = DEFAULT_MAPPINGS_DIR) -> list[dict[str, Any]]:
    """The advice CodeSystem's concepts in their order (rules.md's order)."""
    path = mappings_dir / ADVICE_CODESYSTEM[0]
    document = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in document.get("concept") or () if isinstance(c, dict) and "code" in c]


def setting_values(
    names: Iterable[str],
    clinical: ClinicalSettings,
    sites: Sequence[tuple[str, SitePolicy]] = (),
) -> tuple[SettingValue, ...]:
    defaults = ClinicalSettings()
    return tuple(
        SettingValue(
            name=name,
            env=SETTING_ENV[name],
            meaning=SETTING_MEANING[name],
            value=str(getattr(clinical, name)),
            default=str(getattr(defaults, name)),
            sites=tuple(
                (site, str(policy.settings[name]))
                for site, policy in sites
                if name in policy.settings
            ),
        )
        for name in names
    )


def build_gallery(
    templates: Templates,
    examples: Iterable[Example],
    settings: Settings,
    today: date,
    sites: Sequence[tuple[str, SitePolicy]] = (),
) -> list[RuleEntry]:
    """Every rule of the advice CodeSystem that has a card template, with the cards the examples
    give for it (each example on its own hook and draft, dates moved to ``today``); ``sites``:
    each site's policy (issuers file), shown beside the defaults."""
    entries: dict[str, RuleEntry] = {}
    for concept in advice_concepts():
        rule = concept["code"]
        if rule not in templates:
            continue
        template = templates[rule]
        entries[rule] = RuleEntry(
            rule=rule,
            display=template.display,
            definition=str(concept.get("definition", "")),
            hooks=template.hooks,
            indicators=template.indicators,
            sources=templates.sources_of(template),
            settings=setting_values(RULE_SETTINGS.get(rule, ()), settings.clinical, sites),
            suggestions=tuple(template.suggestions.values()),
            override_reasons=tuple(r.display for r in template.override_reasons),
            local_protocol=templates.seed_only(template),
            version=template.version,
            status=template.status,
            disabled_at=tuple(site for site, policy in sites if rule in policy.disabled_rules),
        )
    for example in examples:
        view = View(example, example.hook, example.draft)
        for run in run_view(view, today, settings, templates):
            for card in run.cards:
                topic = card.get("source", {}).get("topic", {}).get("code")
                if topic in entries:
                    entries[topic].firings.append(Firing(example, run.service.id, card))
    return list(entries.values())
