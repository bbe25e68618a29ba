"""One hook call end to end: gather FHIR data → normalized record → advice → cards.

The HTTP layer has already authenticated the caller, validated the body against the request
schema and chosen the service on (id, hook). Everything here is independent of Flask so the CLI,
the benchmark and the tests can run a hook call directly.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from datetime import date
from typing import Any

from cds_service import advice, cards_render
from cds_service.cards_render import Templates
from cds_service.catalogue import Catalogue
from cds_service.fhir.allow import EgressPolicy
from cds_service.fhir.client import FhirClient
from cds_service.fhir.gather import gather
from cds_service.protocol.auth import ANONYMOUS, Caller
from cds_service.record.build import build_record
from cds_service.services import ServiceDeclaration
from cds_service.settings import Settings


def load_templates(catalogue: Catalogue | None = None) -> Templates:
    """The card templates, loaded and validated once (a broken one raises ConfigurationError),
    and checked against the catalogue's hooks, rules and services (``Catalogue.check``): a rule
    without its template, a template whose hooks differ from its rule's, a rule no service runs
    stop start-up instead of failing a call or never being asked."""
    templates = cards_render.load_templates()
    (catalogue or Catalogue.shipped()).check(templates)
    return templates


def run_hook(
    service: ServiceDeclaration,
    body: dict[str, Any],
    settings: Settings,
    today: date,
    caller: Caller = ANONYMOUS,
    *,
    templates: Templates | None = None,
    observe: MutableMapping[str, Any] | None = None,
    drafts: bool = False,
    fhir: FhirClient | None = None,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """The CDS Hooks response body for one call: ``{"cards": [...]}``.

    The call is decided with its caller's site policy (``cds_service.policy``): the site's
    clinical settings, without the rules it switched off. Rules in draft status give cards only
    with ``drafts`` (the try-it pages); retired rules never do.

    ``templates`` are the ones ``create_app`` loaded at start-up (loaded here when not given);
    ``observe``, when given, receives what the request log and metrics report about the call:
    card topics and indicators and the fallback-fetch counts (never patient data).
    ``fhir`` is the application's FHIR client (``create_app``); without one, a call that
    must fetch opens a client of its own.
    ``catalogue`` (default: the shipped one) holds the hooks and rules the call is decided with.
    """
    catalogue = catalogue or Catalogue.shipped()
    if templates is None:
        templates = load_templates(catalogue)
    started = time.perf_counter()
    settings = caller.policy.apply(settings)
    hook = catalogue.hooks[service.hook]
    data = gather(
        service,
        body,
        settings,
        client=fhir,
        egress=egress_policy(settings, caller),
        drafts_field=hook.drafts_field,
        selections_field=hook.selections_field,
    )
    record = build_record(data, body, settings, today, hooks=catalogue.hooks)
    rules = templates.live_rules(caller.policy.rules(service.rules), drafts=drafts)
    advices = advice.evaluate(
        record, today, settings.clinical, service.hook, rules, catalogue.rules
    )
    failed: list[str] = []  # rule ids of cards that could not be rendered (logged, left out)
    cards = cards_render.render(advices, record, templates, service.hook, failures=failed)
    if observe is not None:
        observe["cards_failed"] = failed
        stats = data.stats
        observe["fallback_fetches"] = stats.fetches
        observe["fallback_ms"] = round(stats.fetch_ms, 1)
        observe["fallback_keys"] = list(stats.keys_fetched)
        observe["truncated_keys"] = list(stats.truncated)
        observe["skipped_resources"] = sum(data.skipped.values())
        observe["flawed_resources"] = dict(data.flawed)
        observe["flawed_drafts"] = data.flawed_drafts
        observe["card_topics"] = [card_topic(card) for card in cards]
        observe["card_indicators"] = [card.get("indicator") for card in cards]
        observe["pipeline_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return response_body(cards)


def egress_policy(settings: Settings, caller: Caller) -> EgressPolicy:
    """Where a call may fetch from: ``MYOCDS_FHIR_ALLOW`` prefixes without the address checks,
    and, with authentication on, only within the calling issuer's ``fhirServers``."""
    return EgressPolicy(settings.fhir_allow, caller.fhir_allow if settings.auth_required else None)


def response_body(
    cards: list[dict[str, Any]], system_actions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """CDS Hooks 2.0: ``cards`` always (possibly empty); ``systemActions`` only when there are some.

    This service proposes no system actions today: every change it suggests is for a clinician
    to accept on a card.
    """
    body: dict[str, Any] = {"cards": cards}
    if system_actions:
        body["systemActions"] = system_actions
    return body


def card_topic(card: dict[str, Any]) -> str | None:
    """The rule id a card was made by (``source.topic.code``, rules.md "Card identity")."""
    topic = card.get("source", {}).get("topic") or {}
    code = topic.get("code")
    return code if isinstance(code, str) else None
