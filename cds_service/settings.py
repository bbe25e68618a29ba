"""One settings object, read once from ``MYOCDS_*`` environment variables.

Everything configurable lives here: operational settings (auth, storage, limits, timeouts) and
the clinical thresholds that ``rules.md`` marks "(setting)". Defaults are the safe ones: auth on,
SQLite under ``./var/``, the rules.md defaults.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from cds_service.errors import ConfigurationError

AUTH_MODES = ("required", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DOSING_WEIGHT_POLICIES = ("ideal", "adjusted", "actual")


# The range each numeric clinical setting may take in a site's policy (cds_service.policy): wide
# enough for any local protocol, narrow enough to catch a typo (days for a ULN, a ULN of 0).
CLINICAL_LIMITS: dict[str, tuple[int, int]] = {
    "recent_days": (1, 365),
    "ck_uln_male": (20, 2000),
    "ck_uln_female": (20, 2000),
    "ck_uln_other": (20, 2000),
    "hmg_withdrawal_days": (1, 730),
    "hmg_early_days": (1, 730),
    "weight_recent_days": (1, 730),
    "renal_recent_days": (1, 365),
    "egfr_threshold": (10, 120),
    "ck_monitor_early_days": (7, 365),
    "ck_monitor_late_days": (7, 365),
    "ck_monitor_phase_days": (1, 730),
    "ck_monitor_horizon_days": (1, 1825),
}


@dataclass(frozen=True)
class ClinicalSettings:
    """Thresholds marked (setting) in rules.md, with the rules.md defaults."""

    # rules.md Definitions "Recent": within 30 days of today, day 30 included.
    recent_days: int = 30
    # rules.md "CK ULN": sex defaults when the result has no referenceRange.high [LABCK].
    ck_uln_male: Decimal = Decimal("308")
    ck_uln_female: Decimal = Decimal("192")
    ck_uln_other: Decimal = Decimal("192")
    # rules.md HMG-01: statin stop date >= 56 days ago (ACC13 "after 2 months").
    hmg_withdrawal_days: int = 56
    # rules.md HMG-02: early flag window starts 28 days after the stop [JFP; timing DESIGN].
    hmg_early_days: int = 28
    # rules.md "Dosing weight": ideal (seeds), adjusted [NBA] or actual.
    ivig_dosing_weight: str = "ideal"
    # rules.md "Dosing weight": latest weight within 90 days.
    weight_recent_days: int = 90
    # rules.md SAFE-01: creatinine or eGFR within 30 days [OCTEM; window DESIGN].
    renal_recent_days: int = 30
    # rules.md SAFE-02: eGFR < 60 mL/min/1.73m2 [DESIGN].
    egfr_threshold: Decimal = Decimal("60")
    # rules.md CONT-02 (r2: a local protocol, its thresholds are site settings) [SEED1 only]: CK
    # every 56 days while the last IVIG is <= 182 days ago, every 91 days after, for 365 days.
    ck_monitor_early_days: int = 56
    ck_monitor_late_days: int = 91
    ck_monitor_phase_days: int = 182
    ck_monitor_horizon_days: int = 365


@dataclass(frozen=True)
class Settings:
    auth: str = "required"
    today: date | None = None
    database_url: str = "sqlite:///var/myocds.sqlite3"
    redis_url: str | None = None
    fhir_allow: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ("*",)
    public_base_url: str | None = None
    # Addresses/networks of the reverse proxies whose X-Forwarded-* headers are believed (one
    # hop); from anyone else those headers are dropped. Empty: nobody's.
    trusted_proxies: tuple[str, ...] = ()
    issuers_file: str | None = None
    sandbox_issuer: bool = False
    clock_skew_seconds: int = 300
    try_pages: bool | None = None  # None: on exactly when auth is off
    # The feedback report page (/try/report, issue 15); None: on exactly when the try pages are.
    report_page: bool | None = None
    max_body_bytes: int = 5 * 1024 * 1024
    max_json_depth: int = 64
    max_resources: int = 20000
    fhir_timeout_seconds: float = 2.0
    hook_deadline_seconds: float = 4.0
    fhir_page_cap: int = 10
    fhir_pool_size: int = 16
    # One hook call's fallback fetches hold at most this many response bytes, all keys together.
    fhir_call_bytes: int = 16 * 1024 * 1024
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 8
    # Calls of one worker that compute at once (cds_service.admission says why one).
    compute_slots: int = 1
    # The served front end (commands/front.py): a request's head must be complete this long after
    # the connection (or the previous response), its body this long after the head.
    header_deadline_seconds: float = 5.0
    body_deadline_seconds: float = 15.0
    # Operations (issue 6): /metrics without authentication even when auth is required (for a
    # scraper inside the cluster network); the benchmark's no-op floor endpoint.
    metrics_public: bool = False
    bench_noop: bool = False
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)

    @property
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def try_enabled(self) -> bool:
        return (not self.auth_required) if self.try_pages is None else self.try_pages

    @property
    def report_page_enabled(self) -> bool:
        return self.try_enabled if self.report_page is None else self.report_page

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests, CLI); clinical fields may be given by name."""
        clinical_names = {f.name for f in dataclasses.fields(ClinicalSettings)}
        clinical_changes = {k: changes.pop(k) for k in list(changes) if k in clinical_names}
        clinical = dataclasses.replace(self.clinical, **clinical_changes)  # type: ignore[arg-type]
        return dataclasses.replace(self, clinical=clinical, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            auth=reader.choice("MYOCDS_AUTH", "required", AUTH_MODES),
            today=reader.date("MYOCDS_TODAY"),
            database_url=reader.text("MYOCDS_DATABASE_URL", _default_database_url()),
            redis_url=reader.optional("MYOCDS_REDIS_URL"),
            fhir_allow=reader.csv("MYOCDS_FHIR_ALLOW", ()),
            cors_origins=reader.csv("MYOCDS_CORS_ORIGINS", ("*",)),
            public_base_url=reader.optional("MYOCDS_PUBLIC_BASE_URL"),
            trusted_proxies=reader.networks("MYOCDS_TRUSTED_PROXIES"),
            issuers_file=reader.optional("MYOCDS_ISSUERS_FILE"),
            sandbox_issuer=reader.flag("MYOCDS_TRUST_SANDBOX", False),
            clock_skew_seconds=reader.integer("MYOCDS_CLOCK_SKEW_SECONDS", 300, low=0),
            try_pages=reader.optional_flag("MYOCDS_TRY"),
            report_page=reader.optional_flag("MYOCDS_REPORT_PAGE"),
            max_body_bytes=reader.integer("MYOCDS_MAX_BODY_BYTES", 5 * 1024 * 1024, low=1024),
            max_json_depth=reader.integer("MYOCDS_MAX_JSON_DEPTH", 64, low=8),
            max_resources=reader.integer("MYOCDS_MAX_RESOURCES", 20000, low=1),
            fhir_timeout_seconds=reader.number("MYOCDS_FHIR_TIMEOUT_SECONDS", 2.0, high=600),
            hook_deadline_seconds=reader.number("MYOCDS_HOOK_DEADLINE_SECONDS", 4.0, high=600),
            fhir_page_cap=reader.integer("MYOCDS_FHIR_PAGE_CAP", 10, low=1),
            fhir_pool_size=reader.integer("MYOCDS_FHIR_POOL_SIZE", 16, low=1),
            fhir_call_bytes=reader.integer(
                "MYOCDS_FHIR_CALL_BYTES", 16 * 1024 * 1024, low=64 * 1024
            ),
            log_level=reader.choice("MYOCDS_LOG_LEVEL", "info", LOG_LEVELS).upper(),
            host=reader.text("MYOCDS_HOST", "127.0.0.1"),
            port=reader.integer("MYOCDS_PORT", 8080, low=1, high=65535),
            workers=reader.integer("MYOCDS_WORKERS", 2, low=1),
            threads=reader.integer("MYOCDS_THREADS", 8, low=1),
            compute_slots=reader.integer("MYOCDS_COMPUTE_SLOTS", 1, low=1),
            header_deadline_seconds=reader.number(
                "MYOCDS_HEADER_DEADLINE_SECONDS", 5.0, high=600
            ),
            body_deadline_seconds=reader.number("MYOCDS_BODY_DEADLINE_SECONDS", 15.0, high=600),
            metrics_public=reader.flag("MYOCDS_METRICS_PUBLIC", False),
            bench_noop=reader.flag("MYOCDS_BENCH_NOOP", False),
            clinical=ClinicalSettings(
                recent_days=reader.integer("MYOCDS_RECENT_DAYS", 30, low=1),
                ck_uln_male=reader.decimal("MYOCDS_CK_ULN_MALE", Decimal("308")),
                ck_uln_female=reader.decimal("MYOCDS_CK_ULN_FEMALE", Decimal("192")),
                ck_uln_other=reader.decimal("MYOCDS_CK_ULN_OTHER", Decimal("192")),
                hmg_withdrawal_days=reader.integer("MYOCDS_HMG_WITHDRAWAL_DAYS", 56, low=1),
                hmg_early_days=reader.integer("MYOCDS_HMG_EARLY_DAYS", 28, low=1),
                ivig_dosing_weight=reader.choice(
                    "MYOCDS_IVIG_DOSING_WEIGHT", "ideal", DOSING_WEIGHT_POLICIES
                ),
                weight_recent_days=reader.integer("MYOCDS_WEIGHT_RECENT_DAYS", 90, low=1),
                renal_recent_days=reader.integer("MYOCDS_RENAL_RECENT_DAYS", 30, low=1),
                egfr_threshold=reader.decimal("MYOCDS_EGFR_THRESHOLD", Decimal("60")),
                ck_monitor_early_days=reader.integer("MYOCDS_CK_MONITOR_EARLY_DAYS", 56, low=1),
                ck_monitor_late_days=reader.integer("MYOCDS_CK_MONITOR_LATE_DAYS", 91, low=1),
                ck_monitor_phase_days=reader.integer("MYOCDS_CK_MONITOR_PHASE_DAYS", 182, low=1),
                ck_monitor_horizon_days=reader.integer(
                    "MYOCDS_CK_MONITOR_HORIZON_DAYS", 365, low=1
                ),
            ),
        )
        if reader.errors:
            raise ConfigurationError("; ".join(reader.errors))
        return settings


def _default_database_url() -> str:
    return f"sqlite:///{Path('var').resolve() / 'myocds.sqlite3'}"


class _Reader:
    """Parses environment values, collecting every error so start-up names them all at once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def optional(self, name: str) -> str | None:
        return self._raw(name)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        """One of ``allowed``, matched without regard to case, spelled as in ``allowed``."""
        raw = self._raw(name) or default
        for value in allowed:
            if raw.lower() == value.lower():
                return value
        self.errors.append(f"{name}={raw!r} is not one of {', '.join(allowed)}")
        return next(v for v in allowed if v.lower() == default.lower())

    def csv(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return default
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def networks(self, name: str) -> tuple[str, ...]:
        values = self.csv(name, ())
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                self.errors.append(f"{name}: {value!r} is not an IP address or network")
                return ()
        return values

    def integer(
        self, name: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not an integer")
            return default
        if low is not None and value < low:
            self.errors.append(f"{name}={value} is below the minimum {low}")
            return default
        if high is not None and value > high:
            self.errors.append(f"{name}={value} is above the maximum {high}")
            return default
        return value

    def number(self, name: str, default: float, high: float | None = None) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a number")
            return default
        if not value > 0:
            self.errors.append(f"{name}={raw!r} must be positive")
            return default
        if high is not None and not value <= high:  # also catches inf
            self.errors.append(f"{name}={raw!r} is above the maximum {high:g}")
            return default
        return value

    def decimal(self, name: str, default: Decimal) -> Decimal:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = Decimal(raw)
        except ArithmeticError:
            self.errors.append(f"{name}={raw!r} is not a number")
            return default
        if not value.is_finite() or value <= 0:
            self.errors.append(f"{name}={raw!r} must be a positive number")
            return default
        return value

    def date(self, name: str) -> date | None:
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a date (YYYY-MM-DD)")
            return None

    def optional_flag(self, name: str) -> bool | None:
        raw = self._raw(name)
        if raw is None:
            return None
        lowered = raw.lower()
        if lowered in ("1", "on", "true", "yes"):
            return True
        if lowered in ("0", "off", "false", "no"):
            return False
        self.errors.append(f"{name}={raw!r} is not on/off")
        return None

    def flag(self, name: str, default: bool) -> bool:
        value = self.optional_flag(name)
        return default if value is None else value
