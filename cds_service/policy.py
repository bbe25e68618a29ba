"""Per-site policy: a hospital's own values for the settings rules.md marks "(setting)", and the
rules it has switched off.

A CDS or pharmacy and therapeutics committee decides local policy (which dosing weight for IVIG,
which CK reference ranges when the lab sends none, whether a local-protocol rule such as CONT-02
is on). Each site is an entry of the issuers file (``MYOCDS_ISSUERS_FILE``), an issuer or a tenant
within an issuer (told apart by the JWT's ``tenant`` claim), and may carry::

    "settings": {"ivig_dosing_weight": "adjusted", "ck_uln_female": 170},
    "disabledRules": ["CONT-02"]

Setting names are the ones rules.md uses (the fields of ``ClinicalSettings``). A call is decided
with its caller's policy: the deployment's clinical settings with the site's values over them, and
the site's disabled rules left out. A file naming an unknown setting, a value out of range or an
unknown rule stops start-up, with every fault named (``parse_policy`` collects them,
``protocol.auth`` reads the file).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from cds_service.settings import CLINICAL_LIMITS, DOSING_WEIGHT_POLICIES, ClinicalSettings, Settings

POLICY_FIELDS = ("settings", "disabledRules")


@dataclass(frozen=True)
class SitePolicy:
    """One site's clinical values (parsed, by setting name) and the rules it switched off."""

    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    disabled_rules: frozenset[str] = frozenset()

    def clinical(self, base: ClinicalSettings) -> ClinicalSettings:
        return dataclasses.replace(base, **self.settings) if self.settings else base

    def apply(self, settings: Settings) -> Settings:
        """The deployment's settings with this site's clinical values over them."""
        if not self.settings:
            return settings
        return dataclasses.replace(settings, clinical=self.clinical(settings.clinical))

    def rules(self, declared: Iterable[str]) -> tuple[str, ...]:
        """The declared rules this site has not switched off."""
        return tuple(rule for rule in declared if rule not in self.disabled_rules)


DEFAULT_POLICY = SitePolicy()


def setting_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(ClinicalSettings))


def known_rules() -> frozenset[str]:
    """Every rule a declared service runs (services.py): the ids a policy may switch off."""
    from cds_service.services import SERVICES

    return frozenset(rule for service in SERVICES for rule in service.rules)


def parse_policy(entry: Mapping[str, Any], where: str) -> tuple[SitePolicy, list[str]]:
    """The policy of one issuers-file entry, and every fault found in it (each naming ``where``
    and the setting or rule at fault). A fault-free entry without policy is ``DEFAULT_POLICY``."""
    faults: list[str] = []
    values: dict[str, Any] = {}
    raw_settings = entry.get("settings", {})
    if not isinstance(raw_settings, Mapping):
        faults.append(f"{where}: 'settings' must be an object of setting names and values")
        raw_settings = {}
    names = setting_names()
    for name, raw in raw_settings.items():
        if name not in names:
            faults.append(
                f"{where}: settings: unknown setting {name!r} (known: {', '.join(names)})"
            )
            continue
        value, problem = _setting_value(name, raw)
        if problem:
            faults.append(f"{where}: settings: {name}={raw!r} {problem}")
        else:
            values[name] = value
    if not faults and values:
        faults.extend(f"{where}: settings: {p}" for p in _combination_problems(values))
    disabled = entry.get("disabledRules", [])
    if not isinstance(disabled, list) or not all(isinstance(r, str) for r in disabled):
        faults.append(f"{where}: 'disabledRules' must be a list of rule ids")
        disabled = []
    rules = known_rules()
    for rule in disabled:
        if rule not in rules:
            faults.append(f"{where}: disabledRules: unknown rule {rule!r}")
    if faults:
        return DEFAULT_POLICY, faults
    if not values and not disabled:
        return DEFAULT_POLICY, []
    return SitePolicy(MappingProxyType(values), frozenset(disabled)), []


def _setting_value(name: str, raw: object) -> tuple[Any, str | None]:
    """The parsed value, or why it cannot be one (type or range)."""
    if name == "ivig_dosing_weight":
        if isinstance(raw, str):
            for allowed in DOSING_WEIGHT_POLICIES:
                if raw.strip().lower() == allowed:
                    return allowed, None
        return None, f"is not one of {', '.join(DOSING_WEIGHT_POLICIES)}"
    low, high = CLINICAL_LIMITS[name]
    kind = type(getattr(ClinicalSettings(), name))
    if isinstance(raw, bool):
        return None, "is not a number"
    if kind is int:
        if not isinstance(raw, int):
            return None, "is not a whole number of days"
        value: Any = raw
    else:
        try:
            value = Decimal(str(raw)) if isinstance(raw, int | float | str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            return None, "is not a number"
    if not low <= value <= high:
        return None, f"is out of range ({low} to {high})"
    return value, None


def _combination_problems(values: Mapping[str, Any]) -> list[str]:
    """Values each in range that together contradict rules.md's windows."""
    merged = dataclasses.replace(ClinicalSettings(), **values)
    problems = []
    if merged.hmg_early_days >= merged.hmg_withdrawal_days:
        problems.append(
            f"hmg_early_days={merged.hmg_early_days} must be below "
            f"hmg_withdrawal_days={merged.hmg_withdrawal_days} (HMG-02 comes before HMG-01)"
        )
    if merged.ck_monitor_phase_days >= merged.ck_monitor_horizon_days:
        problems.append(
            f"ck_monitor_phase_days={merged.ck_monitor_phase_days} must be below "
            f"ck_monitor_horizon_days={merged.ck_monitor_horizon_days} (CONT-02)"
        )
    return problems


def describe(policy: SitePolicy, defaults: ClinicalSettings) -> list[tuple[str, str, str]]:
    """(setting, default, this site's value) for every setting the site sets, in field order."""
    rows = []
    for name in setting_names():
        if name in policy.settings:
            rows.append((name, str(getattr(defaults, name)), str(policy.settings[name])))
    return rows
