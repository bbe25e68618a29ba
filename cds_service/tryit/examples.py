"""The shipped example patients (``examples/index.json`` + one FHIR Bundle each) and the CDS Hooks
requests an EHR holding one of them would send.

Only these examples are ever shown by the try-it pages: a name that is not in the index is a 404,
and nothing here reads patient data from anywhere else or names a FHIR server (the requests carry
a complete ``prefetch`` and no ``fhirServer``, so the service never fetches).

Dates: each example is written to be judged on its own clinical date (``today`` in the index).
When the service's date differs (the real clock, or ``MYOCDS_TODAY``), every date in the record is
moved by the same number of days (``shift_dates``), so "CK three days ago" stays three days ago
and the example gives the cards it was written for on any day.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cds_service.demo.search import build_prefetch
from cds_service.errors import ConfigurationError, NotFound
from cds_service.hooks import HOOKS, HookDeclaration, Hooks
from cds_service.packaged import data_dir
from cds_service.services import ServiceDeclaration, services_for_hook
from cds_service.tryit.drafts import (
    DRAFT_FULL_URL,
    DRAFT_ID,
    DraftSpec,
    draft_resource,
    spec_from_index,
)

DEFAULT_EXAMPLES_DIR = data_dir("examples")
INDEX_FILE = "index.json"
TRY_USER = "Practitioner/try-it"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# FHIR date, dateTime and instant values with a full date (the only precision the examples use).
_FHIR_DATE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?$"
)


@dataclass(frozen=True)
class Expected:
    topic: str
    indicator: str


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    description: str
    today: date  # the clinical date it is written for
    hook: str
    draft: DraftSpec
    expect: tuple[Expected, ...]
    record: Mapping[str, Any]  # FHIR Bundle, type collection

    @property
    def patient(self) -> Mapping[str, Any]:
        for entry in self.record["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                return entry["resource"]
        raise AssertionError("checked at load time")

    @property
    def patient_id(self) -> str:
        return str(self.patient["id"])


class Examples:
    """The examples in index order, by name."""

    def __init__(self, examples: Iterable[Example], directory: Path) -> None:
        self._by_name = {e.name: e for e in examples}
        self.directory = directory

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str | None) -> Example:
        """The example called ``name`` (the first one when no name is given); ``NotFound`` for
        any other name: the pages show the shipped examples and nothing else."""
        if not name:
            return next(iter(self._by_name.values()))
        example = self._by_name.get(name)
        if example is None:
            raise NotFound("no such example patient; the examples are listed at /try")
        return example


def load_examples(directory: Path | None = None) -> Examples:
    """Read and check ``index.json`` and every Bundle it names (``ConfigurationError`` when any
    is broken: a shipped example that cannot be shown is a defect, found at start-up).

    Read once per process while the files stay the same (every app the tests create would
    otherwise parse them again). Nothing changes a loaded example: its record is copied
    (``record_on``) before any use, so apps may share it.
    """
    directory = (directory or DEFAULT_EXAMPLES_DIR).resolve()
    try:
        stamp = tuple(
            (p.name, p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(directory.glob("*.json"))
        )
    except OSError:
        stamp = ()
    return _load_examples(directory, stamp)


@functools.lru_cache(maxsize=8)
def _load_examples(directory: Path, stamp: tuple[tuple[str, int, int], ...]) -> Examples:
    index_path = directory / INDEX_FILE
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"example index {index_path}: {exc}") from None
    entries = index.get("examples") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"example index {index_path}: needs a non-empty 'examples' list")
    problems: list[str] = []
    examples: list[Example] = []
    for position, entry in enumerate(entries):
        try:
            examples.append(_example(entry, directory, f"{INDEX_FILE} entry {position}"))
        except ValueError as exc:
            problems.append(str(exc))
    names = [e.name for e in examples]
    twice = sorted(n for n in set(names) if names.count(n) > 1)
    problems.extend(f"example {n!r} is listed twice" for n in twice)
    if problems:
        raise ConfigurationError("broken example patient(s):\n- " + "\n- ".join(problems))
    return Examples(examples, directory)


def _example(entry: Any, directory: Path, where: str) -> Example:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name must be lower-case letters, digits and '-'")
    where = f"{where} ({name})"
    for member in ("title", "description"):
        if not isinstance(entry.get(member), str) or not entry[member].strip():
            raise ValueError(f"{where}: {member} must be a non-empty string")
    try:
        today = date.fromisoformat(str(entry.get("today")))
    except ValueError:
        raise ValueError(f"{where}: today must be a date (YYYY-MM-DD)") from None
    hook = entry.get("hook")
    if not isinstance(hook, str) or hook not in HOOKS:
        raise ValueError(f"{where}: hook must be one of {', '.join(HOOKS.names())}")
    draft = spec_from_index(entry.get("draft"), where)
    expect = []
    for item in entry.get("expect") or ():
        if not isinstance(item, dict) or not {"topic", "indicator"} <= set(item):
            raise ValueError(f"{where}: expect items need topic and indicator")
        expect.append(Expected(str(item["topic"]), str(item["indicator"])))
    path = directory / f"{name}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: {path.name}: {exc}") from None
    _check_record(record, f"{where}: {path.name}")
    return Example(
        name=name,
        title=entry["title"].strip(),
        description=entry["description"].strip(),
        today=today,
        hook=hook,
        draft=draft,
        expect=tuple(expect),
        record=record,
    )


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict) or record.get("resourceType") != "Bundle":
        raise ValueError(f"{where}: not a FHIR Bundle")
    if record.get("type") != "collection":
        raise ValueError(f"{where}: Bundle.type must be collection")
    entries = record.get("entry")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("resource"), dict) for e in entries
    ):
        raise ValueError(f"{where}: every entry needs a resource")
    patients = [e["resource"] for e in entries if e["resource"].get("resourceType") == "Patient"]
    if len(patients) != 1 or not isinstance(patients[0].get("id"), str):
        raise ValueError(f"{where}: needs exactly one Patient with an id")


# --- dates -----------------------------------------------------------------------------------


def shift_days(example: Example, today: date) -> int:
    """How many days the example's record moves so that its clinical date becomes ``today``."""
    return (today - example.today).days


def shift_dates(value: Any, days: int) -> Any:
    """A copy of ``value`` (FHIR JSON) with every date, dateTime and instant moved by ``days``
    (the time of day and the offset kept)."""
    if days == 0:
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str):
        match = _FHIR_DATE.match(value)
        if match:
            moved = date.fromisoformat(match.group(1)) + timedelta(days=days)
            return moved.isoformat() + (match.group(2) or "")
    return value


def record_on(example: Example, today: date) -> dict[str, Any]:
    """The example's record with its dates moved to ``today`` (``shift_dates``)."""
    return shift_dates(example.record, shift_days(example, today))


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What the page shows: an example on a hook, with a draft on the hooks that take drafts
    (``hooks``: the application's hook declarations)."""

    example: Example
    hook: str
    draft: DraftSpec
    hooks: Hooks = field(default=HOOKS, compare=False)

    @property
    def declaration(self) -> HookDeclaration | None:
        return self.hooks.get(self.hook)

    @property
    def has_draft(self) -> bool:
        declaration = self.declaration
        return declaration is not None and declaration.takes_drafts

    def query(self) -> dict[str, str]:
        params = {"example": self.example.name, "hook": self.hook}
        if self.has_draft:
            params.update(self.draft.query())
        return params


def context_for(view: View, today: date) -> dict[str, Any]:
    """The hook context an EHR would send (``HookDeclaration.context``): the patient, the user,
    and on a hook that takes drafts the drafted order (named in the selections where the hook has
    them, as the Sandbox's Rx View does)."""
    hook = view.declaration
    if hook is None:
        raise NotFound(f"no hook {view.hook!r} is declared")
    patient_id = view.example.patient_id
    drafts = [draft_resource(view.draft, patient_id, today)] if hook.takes_drafts else []
    return hook.context(
        patient_id,
        TRY_USER,
        drafts,
        full_urls=[DRAFT_FULL_URL],
        selections=[f"MedicationRequest/{DRAFT_ID}"],
    )


def request_body(
    view: View, service: ServiceDeclaration, today: date, hook_instance: str | None = None
) -> dict[str, Any]:
    """The POST body for ``service``: the prefetch is what the EHR answers to the service's own
    prefetch templates over the (date-moved) record; no ``fhirServer``, so nothing is fetched."""
    context = context_for(view, today)
    return {
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "hook": view.hook,
        "context": context,
        "prefetch": build_prefetch(service, context, record_on(view.example, today)),
    }


def requests_for(
    view: View, today: date, services: Iterable[ServiceDeclaration] | None = None
) -> list[tuple[ServiceDeclaration, dict[str, Any]]]:
    """One request per service declared for the view's hook (of ``services``, by default the
    shipped ones), as an EHR calls them all."""
    chosen = services_for_hook(view.hook) if services is None else services
    return [(s, request_body(view, s, today)) for s in chosen if s.hook == view.hook]


def age_on(birth_date: str | None, today: date) -> int | None:
    if not birth_date:
        return None
    try:
        born = datetime.strptime(birth_date[:10], "%Y-%m-%d").date()
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
