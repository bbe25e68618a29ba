"""The CDS hooks this service answers, each declared once.

A ``HookDeclaration`` says what a hook's context holds (its fields, and which of them the service
needs), where its drafted orders and selections are, which orders count as drafted (rules.md
"Drafted"), and so which prefetch templates can be filled on it. Discovery and routing (through
the services), request validation (``protocol.schemas.request_schema``), the record builder
(``record.build``), the try-it request builder (``tryit.examples``) and ``myocds call`` read these
declarations; none of them spells a hook name or a context field itself.

Adding a hook: one ``HookDeclaration`` in ``HOOKS``, its rules (``@rule(..., hooks=...)`` in
``advice``), their card templates, and a service for it in ``services.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

__all__ = [
    "HOOKS",
    "ORDER_HOOKS",
    "ORDER_SELECT",
    "ORDER_SIGN",
    "PATIENT_VIEW",
    "Drafted",
    "HookDeclaration",
    "HookName",
    "Hooks",
]

# The hooks shipped; ``HOOKS`` below declares each (a test pins the two together).
HookName = Literal["patient-view", "order-select", "order-sign"]
PATIENT_VIEW: Final = "patient-view"
ORDER_SELECT: Final = "order-select"
ORDER_SIGN: Final = "order-sign"
ORDER_HOOKS: frozenset[HookName] = frozenset({ORDER_SELECT, ORDER_SIGN})


class Drafted(Enum):
    """Which drafted orders a rule treats as drafted in this hook (rules.md "Drafted")."""

    NONE = "none"  # no orders are drafted (patient-view)
    ALL = "all"  # every MedicationRequest of the drafts (order-sign)
    # the MedicationRequests named in the selections, every one when the client names none
    # (the Sandbox's Rx View sends none) (order-select)
    SELECTED = "selected"


_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class HookDeclaration:
    """One hook as this service reads it."""

    name: str  # a HookName for the shipped hooks
    title: str  # how the try-it page names it
    # Every context field the hook carries (CDS Hooks 2.0 hook definition) ...
    fields: tuple[str, ...]
    # ... and the ones the service needs: a call without one is refused (400) naming it. Real
    # clients omit others the specification requires (userId, selections), harmlessly.
    required: tuple[str, ...] = ("patientId",)
    # The context field holding the drafted orders (a Bundle), and the one naming the selected
    # ones ("MedicationRequest/<id>"); None when the hook has none.
    drafts_field: str | None = None
    selections_field: str | None = None
    drafted: Drafted = Drafted.NONE

    @property
    def takes_drafts(self) -> bool:
        """Whether an EHR sends drafted orders on this hook (the try-it page drafts one)."""
        return self.drafts_field is not None

    def context_schema(self) -> dict[str, Any]:
        """The JSON Schema fragment this hook adds to ``context`` (request validation)."""
        return {"required": list(self.required)} if self.required else {}

    def fills(self, template: str) -> bool:
        """Whether every ``{{context.X}}`` token of a prefetch template is a field of this hook's
        context, i.e. whether a service on this hook may announce the template."""
        return all(token in self.fields for token in _TOKEN.findall(template))

    def prefetch_keys(self, templates: Mapping[str, str]) -> tuple[str, ...]:
        """The prefetch keys of ``templates`` that apply to this hook."""
        return tuple(key for key, template in templates.items() if self.fills(template))

    def context(
        self,
        patient_id: str,
        user_id: str,
        drafts: Sequence[Mapping[str, Any]] = (),
        *,
        full_urls: Sequence[str | None] = (),
        selections: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The context an EHR sends on this hook: the patient and user, and on a hook with drafts
        the ``drafts`` as a Bundle (entry ``fullUrl`` from ``full_urls`` when given) with
        ``selections`` naming every draft unless told which (as the Sandbox's Rx View does)."""
        context: dict[str, Any] = {"userId": user_id, "patientId": patient_id}
        if self.drafts_field is None or not drafts:
            return context
        entries = []
        for index, resource in enumerate(drafts):
            entry: dict[str, Any] = {}
            full_url = full_urls[index] if index < len(full_urls) else None
            if full_url:
                entry["fullUrl"] = full_url
            entry["resource"] = resource
            entries.append(entry)
        context[self.drafts_field] = {
            "resourceType": "Bundle", "type": "collection", "entry": entries,
        }
        if self.selections_field is not None:
            if selections is None:
                selections = [
                    f"{r['resourceType']}/{r['id']}" for r in drafts if isinstance(r.get("id"), str)
                ]
            if selections:
                context[self.selections_field] = list(selections)
        return context

    def fit(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``context`` without the draft and selection fields this hook does not have
        (a chart's context moved to another hook)."""
        foreign = {
            f
            for hook in HOOKS
            for f in (hook.drafts_field, hook.selections_field)
            if f is not None and f not in (self.drafts_field, self.selections_field)
        }
        return {k: v for k, v in context.items() if k not in foreign}


_CONTEXT = ("userId", "patientId", "encounterId")


@dataclass(frozen=True)
class Hooks:
    """The hooks of one application, by name, in declaration order."""

    declarations: tuple[HookDeclaration, ...]
    _by_name: Mapping[str, HookDeclaration] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {h.name: h for h in self.declarations}
        if len(by_name) != len(self.declarations):
            raise ValueError("a hook is declared twice")
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))

    def __iter__(self) -> Iterator[HookDeclaration]:
        return iter(self.declarations)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str) -> HookDeclaration | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> HookDeclaration:
        return self._by_name[name]

    def plus(self, *declarations: HookDeclaration) -> Hooks:
        """These hooks and ``declarations`` (an application with a hook of its own)."""
        return Hooks((*self.declarations, *declarations))

    def drafted(self, name: str) -> Drafted:
        hook = self.get(name)
        return hook.drafted if hook is not None else Drafted.NONE


HOOKS = Hooks(
    (
        HookDeclaration(
            name=PATIENT_VIEW,
            title="Patient view (chart opened)",
            fields=_CONTEXT,
        ),
        HookDeclaration(
            name=ORDER_SELECT,
            title="Order select (order being written)",
            fields=(*_CONTEXT, "selections", "draftOrders"),
            drafts_field="draftOrders",
            selections_field="selections",
            drafted=Drafted.SELECTED,
        ),
        HookDeclaration(
            name=ORDER_SIGN,
            title="Order sign (order being signed)",
            fields=(*_CONTEXT, "draftOrders"),
            drafts_field="draftOrders",
            drafted=Drafted.ALL,
        ),
    )
)

assert set(HOOKS.names()) == set(get_args(HookName)), "HookName and HOOKS must name the same hooks"
