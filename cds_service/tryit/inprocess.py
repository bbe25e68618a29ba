"""One example view run through the service's own steps in this process, for what the HTTP
response does not carry: the normalized record and the advice behind each card (the CK timeline
highlights the values the cards used) and, on the card gallery, the cards of every example at once.

The steps are ``pipeline.run_hook``'s, one by one: ``gather`` (the request carries a complete
prefetch and no ``fhirServer``, so nothing is fetched), ``build_record``, ``advice.evaluate`` with
the service's declared rules, ``cards_render.render``. The try-it page itself never uses this for
its cards: those come from ``POST /cds-services/{id}`` over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service import advice, cards_render
from cds_service.advice.model import Advice
from cds_service.catalogue import Catalogue
from cds_service.fhir.gather import gather
from cds_service.record.build import build_record
from cds_service.record.model import PatientRecord
from cds_service.services import ServiceDeclaration
from cds_service.settings import Settings
from cds_service.tryit.examples import View, requests_for


@dataclass(frozen=True)
class ServiceRun:
    service: ServiceDeclaration
    request: dict[str, Any]
    record: PatientRecord
    advices: tuple[Advice, ...]
    cards: tuple[dict[str, Any], ...]


def run_view(
    view: View,
    today: date,
    settings: Settings,
    templates: Any,
    catalogue: Catalogue | None = None,
) -> list[ServiceRun]:
    """Every service of the view's hook, run in process on the request an EHR would send."""
    catalogue = catalogue or Catalogue.shipped()
    runs = []
    for service, body in requests_for(view, today, catalogue.services):
        hook = catalogue.hooks[service.hook]
        data = gather(
            service,
            body,
            settings,
            drafts_field=hook.drafts_field,
            selections_field=hook.selections_field,
        )
        record = build_record(data, body, settings, today, hooks=catalogue.hooks)
        # Rules in draft status show here, for review, and on no other card (pipeline.run_hook).
        rules = templates.live_rules(service.rules, drafts=True)
        advices = advice.evaluate(
            record, today, settings.clinical, service.hook, rules, catalogue.rules
        )
        cards = cards_render.render(advices, record, templates, service.hook)
        runs.append(ServiceRun(service, body, record, tuple(advices), tuple(cards)))
    return runs


def fullest_record(runs: list[ServiceRun]) -> PatientRecord:
    """The record of the service that prefetches the most (on every hook one service asks for all
    keys, so its record holds the IVIG doses given, which the statin service does not read)."""
    return max(runs, key=lambda run: len(run.service.prefetch_keys)).record
