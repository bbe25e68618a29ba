"""``myocds call``: a command-line mini-EHR for integrators.

It holds one patient's record (a FHIR Bundle, a scenario file, or one of the shipped example
patients moved to today as the try-it page moves them), asks a running service what it offers
(discovery), builds each call as an EHR would (the hook context, and the prefetch by running each
service's own announced templates against the record with
``cds_service.demo.search.build_prefetch``; or no prefetch and a ``fhirServer`` for the service
to fetch from), calls every service of the hook and prints the cards for a person to read:
indicator (coloured on a terminal), summary, detail as text, sources, suggestions with their
action and resource types, links and override reasons.

Exit status: 0 when every service answered 200, 1 when one refused the call (its
OperationOutcome is printed), 2 when the service cannot be reached or the input is unusable.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO, cast

import requests

from cds_service.cli import command
from cds_service.hooks import HOOKS

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_USER = "Practitioner/myocds-cli"
TIMEOUT_SECONDS = 30.0

_COLOURS = {"critical": "\x1b[1;97;41m", "warning": "\x1b[1;30;43m", "info": "\x1b[1;97;44m"}
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


class CallError(Exception):
    """Unusable input or an unreachable service: said in one line, exit status 2."""


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hook", choices=HOOKS.names(), help="the hook to fire (default: the example's own hook)"
    )
    patient = parser.add_mutually_exclusive_group(required=True)
    patient.add_argument(
        "--record", type=Path,
        help="a FHIR Bundle of the patient's record, or a scenario JSON (tests/scenarios)",
    )
    patient.add_argument(
        "--example", metavar="NAME",
        help="a shipped example patient (GET /try lists them; examples/index.json), its dates "
        "moved to --today as the try-it page moves them, with its own drafted order",
    )
    parser.add_argument(
        "--today", type=date.fromisoformat, default=None,
        help="the service's clinical date an --example is moved to (YYYY-MM-DD; default "
        "$MYOCDS_TODAY, else today)",
    )
    parser.add_argument(
        "--draft", type=Path,
        help="the drafted order(s) for order-select/order-sign: a resource or a Bundle",
    )
    parser.add_argument(
        "--url", default=default_url(),
        help=f"the service (default {DEFAULT_URL}, on $MYOCDS_PORT when set, as myocds serve)",
    )
    parser.add_argument(
        "--no-prefetch", action="store_true",
        help="send no prefetch: the service fetches from --fhir-server",
    )
    parser.add_argument("--fhir-server", help="the FHIR base URL sent as fhirServer")
    parser.add_argument("--user", default=None, help=f"context.userId (default {DEFAULT_USER})")
    parser.add_argument(
        "--bearer", default=os.environ.get("MYOCDS_CALL_TOKEN"),
        help="a bearer JWT for a service with authentication on (default $MYOCDS_CALL_TOKEN)",
    )
    parser.add_argument(
        "--private-key", type=Path,
        help="sign a fresh CDS client JWT for every request with this PEM key (EC P-256/P-384 "
        "or RSA), as an EHR does; needs --issuer",
    )
    parser.add_argument("--issuer", help="the JWT's iss (and sub) with --private-key")
    parser.add_argument(
        "--kid", help="the JWT header's kid (default: the key's RFC 7638 JWK thumbprint)"
    )
    parser.add_argument(
        "--audience",
        help="with --private-key: the service's public base URL (its MYOCDS_PUBLIC_BASE_URL) "
        "that each JWT's aud is built from, when it is not --url (a proxy in between)",
    )


def default_url() -> str:
    """Where ``make run`` / ``myocds serve`` listens with the same environment."""
    port = os.environ.get("MYOCDS_PORT", "").strip()
    return f"http://127.0.0.1:{port}" if port.isdigit() else DEFAULT_URL


# --- the record and the context --------------------------------------------------------------


@dataclass
class Chart:
    """What the mini-EHR holds: the record, the hook context, and the scenario's date if any."""

    record: dict[str, Any]
    context: dict[str, Any]
    today: str | None = None
    title: str | None = None
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CallError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CallError(f"{what} {path} is not JSON: {exc.msg} (line {exc.lineno})") from None


def _as_bundle(document: Any, what: str) -> dict[str, Any]:
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        return document
    if isinstance(document, dict) and isinstance(document.get("resourceType"), str):
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": document}]}
    raise CallError(f"{what} must be a FHIR resource or Bundle")


def _resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle.get("entry") or ()
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def example_chart(name: str, hook: str | None, today: date) -> tuple[str, Chart]:
    """A shipped example as the try-it page builds it (``cds_service.tryit.examples``): its
    record with every date moved to ``today``, its context and drafted order on ``hook``."""
    from cds_service.errors import NotFound
    from cds_service.tryit.examples import View, context_for, load_examples, record_on, shift_days

    examples = load_examples()
    try:
        example = examples.get(name)
    except NotFound:
        raise CallError(
            f"no example {name!r}; the examples are: {', '.join(examples.names())}"
        ) from None
    view = View(example, hook or example.hook, example.draft)
    chart = Chart(
        record=record_on(example, today), context=context_for(view, today), title=example.title
    )
    chart.context.pop("userId", None)
    shift = shift_days(example, today)
    if shift:
        chart.notes.append(f"the example's dates are moved by {shift} days to {today}")
    return view.hook, chart


def load_chart(hook: str, record_path: Path, draft_path: Path | None, user: str | None) -> Chart:
    document = _read_json(record_path, "record")
    if isinstance(document, dict) and "record" in document and "context" in document:
        # A scenario: its own record and context (the context of its hook).
        chart = Chart(
            record=_as_bundle(document["record"], "the scenario's record"),
            context=dict(document["context"]),
            today=document.get("today"),
            title=document.get("title"),
        )
        if document.get("hook") != hook:
            chart.notes.append(f"the scenario was written for {document.get('hook')}")
    else:
        record = _as_bundle(document, "--record")
        patients = [r for r in _resources(record) if r.get("resourceType") == "Patient"]
        if len(patients) != 1 or not isinstance(patients[0].get("id"), str):
            raise CallError("the record Bundle must hold exactly one Patient with an id")
        chart = Chart(record=record, context={"patientId": patients[0]["id"]})
    return fit_to_hook(chart, hook, draft_path, user)


def fit_to_hook(chart: Chart, hook: str, draft_path: Path | None, user: str | None) -> Chart:
    """The chart's context for ``hook`` (its ``cds_service.hooks`` declaration): the user, and
    the drafted orders on a hook that takes drafts, all of them selected where it has selections.
    """
    declared = HOOKS[hook]
    if user is not None or "userId" not in chart.context:
        chart.context["userId"] = user or DEFAULT_USER
    chart.context = declared.fit(chart.context)
    if declared.drafts_field is None:
        return chart
    if draft_path is not None:
        drafts = _as_bundle(_read_json(draft_path, "draft"), "--draft")
        chart.context[declared.drafts_field] = drafts
        if declared.selections_field is not None:
            chart.context.pop(declared.selections_field, None)
    drafts_bundle = chart.context.get(declared.drafts_field)
    if not isinstance(drafts_bundle, dict) or not _resources(drafts_bundle):
        raise CallError(f"{hook} needs drafted orders: give --draft FILE")
    selections = declared.selections_field
    if selections is not None and not chart.context.get(selections):
        # The clinician just selected every drafted order (CDS Hooks order-select).
        chart.context[selections] = [
            f"{r['resourceType']}/{r['id']}" for r in _resources(drafts_bundle) if r.get("id")
        ]
    return chart


# --- calling the service ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Announced:
    """A service as discovery announced it; ``prefetch`` is what build_prefetch reads."""

    id: str
    title: str
    prefetch: dict[str, str]


def public_jwk(private_key: Any) -> dict[str, str]:
    """The public half of ``private_key`` as a JWK with ``alg`` and its thumbprint as ``kid``."""
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    public = private_key.public_key()
    if hasattr(public, "curve"):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384"}.get(public.curve.name)
        if alg is None:
            raise CallError(f"EC curve {public.curve.name} is not one a CDS client JWT uses")
        jwk = json.loads(ECAlgorithm.to_jwk(public))
        members: tuple[str, ...] = ("crv", "kty", "x", "y")
    else:
        alg, jwk, members = "RS384", json.loads(RSAAlgorithm.to_jwk(public)), ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    jwk.update(alg=alg, use="sig", kid=base64.urlsafe_b64encode(digest).rstrip(b"=").decode())
    return jwk


class SignedCalls(requests.auth.AuthBase):
    """A fresh JWT per request (CDS Hooks 2.0 §6.2): ``aud`` the URL called, a new ``jti``, five
    minutes of life, signed with the EHR's private key."""

    LIFETIME_SECONDS = 300

    def __init__(
        self, key_path: Path, issuer: str, kid: str | None, base: str, audience: str | None
    ) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            self.key = load_pem_private_key(key_path.read_bytes(), password=None)
        except OSError as exc:
            raise CallError(f"cannot read --private-key {key_path}: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise CallError(f"--private-key {key_path} is not an unencrypted PEM key") from None
        jwk = public_jwk(self.key)
        self.issuer, self.alg, self.kid = issuer, jwk["alg"], kid or jwk["kid"]
        self.base, self.audience = base.rstrip("/"), (audience or base).rstrip("/")

    def token(self, url: str) -> str:
        import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "sub": self.issuer, "aud": url, "iat": now,
                  "exp": now + self.LIFETIME_SECONDS, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm=self.alg,  # type: ignore[arg-type]
                          headers={"kid": self.kid, "typ": "JWT"})

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = str(request.url)
        if url.startswith(self.base + "/"):
            url = self.audience + url[len(self.base):]
        request.headers["Authorization"] = f"Bearer {self.token(url)}"
        return request


def _session(args: argparse.Namespace) -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    if args.private_key is not None:
        if not args.issuer:
            raise CallError("--private-key needs --issuer")
        session.auth = SignedCalls(
            args.private_key, args.issuer, args.kid, args.url, args.audience
        )
    elif args.bearer:
        session.headers["Authorization"] = f"Bearer {args.bearer}"
    return session


def discover(session: requests.Session, base: str, hook: str) -> list[_Announced]:
    try:
        response = session.get(f"{base}/cds-services", timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise CallError(f"cannot reach {base}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise CallError(f"discovery at {base}/cds-services answered HTTP {response.status_code}"
                        f"{_diagnostics(response)}")
    services = response.json().get("services") or []
    return [
        _Announced(s["id"], s.get("title") or s["id"], dict(s.get("prefetch") or {}))
        for s in services
        if s.get("hook") == hook
    ]


def build_request(
    service: _Announced, hook: str, chart: Chart, *, prefetch: bool, fhir_server: str | None
) -> dict[str, Any]:
    from cds_service.demo.search import build_prefetch
    from cds_service.services import ServiceDeclaration

    body: dict[str, Any] = {
        "hook": hook, "hookInstance": str(uuid.uuid4()), "context": chart.context,
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    if prefetch:
        # The running service's own templates, as it announced them: what a real EHR runs.
        declared = cast(ServiceDeclaration, service)
        body["prefetch"] = build_prefetch(declared, chart.context, chart.record)
    return body


def _diagnostics(response: requests.Response) -> str:
    try:
        issues = response.json().get("issue") or []
    except ValueError:
        return ""
    texts = [
        str(i["diagnostics"]) for i in issues if isinstance(i, dict) and i.get("diagnostics")
    ]
    return (": " + "; ".join(texts)) if texts else ""


# --- printing cards --------------------------------------------------------------------------

# Link text may hold brackets itself ("Octagam 10% [immune globulin ...] information").
_LINK = re.compile(r"\[(.+?)\]\(((?:https?|mailto):[^)\s]+)\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")


def markdown_to_text(markdown: str) -> str:
    """Card detail (CommonMark) as terminal text: links as "text <url>", no emphasis marks,
    escapes undone; tables and lists keep their plain-text shape."""
    text = _LINK.sub(lambda m: f"{m.group(1)} <{m.group(2)}>", markdown)
    text = _EMPHASIS.sub(lambda m: m.group(2), text)
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|>])", r"\1", text)


class Printer:
    def __init__(self, out: TextIO, colour: bool, width: int = 100) -> None:
        self.out = out
        self.colour = colour
        self.width = width

    def style(self, text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if self.colour else text

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def block(self, text: str, indent: str) -> None:
        for raw in text.splitlines() or [""]:
            if raw.lstrip().startswith("|") or len(raw) + len(indent) <= self.width:
                self.line(indent + raw if raw else "")
            else:
                wrapped = textwrap.wrap(
                    raw, self.width - len(indent), break_on_hyphens=False,
                    break_long_words=False,  # a URL stays whole, so it can be clicked
                )
                for part in wrapped:
                    self.line(indent + part)

    def service(self, service: _Announced, count: int) -> None:
        heading = f"== {service.title} ({service.id}): {count} card{'s' if count != 1 else ''}"
        self.line(self.style(heading, _BOLD))

    def card(self, card: Mapping[str, Any]) -> None:
        indicator = str(card.get("indicator", "info"))
        if self.colour:
            badge = self.style(f" {indicator.upper()} ", _COLOURS.get(indicator, _BOLD))
        else:
            badge = f"[{indicator.upper()}]"
        source = card.get("source") or {}
        topic = (source.get("topic") or {}).get("code")
        self.line(f"{badge} {card.get('summary', '')}" + (f"  ({topic})" if topic else ""))
        if card.get("detail"):
            self.block(markdown_to_text(str(card["detail"])), "    ")
        if source.get("label"):
            url = f" <{source['url']}>" if source.get("url") else ""
            self.line(self.style(f"    Source: {source['label']}{url}", _DIM))
        for suggestion in card.get("suggestions") or ():
            marker = " (recommended)" if suggestion.get("isRecommended") else ""
            self.line(f"    Suggestion: {suggestion.get('label', '')}{marker}")
            for action in suggestion.get("actions") or ():
                self.line(f"      - {action.get('type', '?')} {_action_target(action)}"
                          + (f": {action['description']}" if action.get("description") else ""))
        if card.get("selectionBehavior"):
            self.line(self.style(f"    Selection: {card['selectionBehavior']}", _DIM))
        for link in card.get("links") or ():
            self.line(f"    Link: {link.get('label', '')} <{link.get('url', '')}> "
                      f"({link.get('type', '')})")
        reasons = card.get("overrideReasons") or ()
        if reasons:
            shown = ", ".join(f"{r.get('display', '')} [{r.get('code', '')}]" for r in reasons)
            self.line(f"    Override reasons: {shown}")
        self.line()

    def summary(self, cards: list[Mapping[str, Any]]) -> None:
        counts = {k: sum(1 for c in cards if c.get("indicator") == k) for k in _COLOURS}
        parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        self.line(self.style(f"{len(cards)} card{'s' if len(cards) != 1 else ''}"
                              + (f": {parts}" if parts else ""), _BOLD))


def _action_target(action: Mapping[str, Any]) -> str:
    resource = action.get("resource")
    if isinstance(resource, dict) and resource.get("resourceType"):
        named = resource["resourceType"]
        return f"{named}/{resource['id']}" if resource.get("id") else named
    if action.get("resourceId"):
        return str(action["resourceId"])
    return "(no resource)"


def use_colour(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR")


# --- the command -----------------------------------------------------------------------------


def _today(given: date | None) -> date:
    if given is not None:
        return given
    pinned = os.environ.get("MYOCDS_TODAY", "").strip()
    try:
        return date.fromisoformat(pinned) if pinned else date.today()
    except ValueError:
        raise CallError(f"MYOCDS_TODAY={pinned!r} is not a date (YYYY-MM-DD)") from None


def run_call(args: argparse.Namespace, out: TextIO) -> int:
    if args.no_prefetch and not args.fhir_server:
        raise CallError("--no-prefetch needs --fhir-server: the service must fetch from somewhere")
    if args.example:
        hook, chart = example_chart(args.example, args.hook, _today(args.today))
        chart = fit_to_hook(chart, hook, args.draft, args.user)
    elif args.hook is None:
        raise CallError("--record needs --hook")
    else:
        hook, chart = args.hook, load_chart(args.hook, args.record, args.draft, args.user)
    base = args.url.rstrip("/")
    session = _session(args)
    services = discover(session, base, hook)
    if not services:
        raise CallError(f"{base} announces no service for {hook}")
    printer = Printer(out, use_colour(out))
    if chart.title:
        printer.line(printer.style(chart.title, _BOLD))
    for note in chart.notes:
        printer.line(f"note: {note}")
    if chart.today:
        printer.line(f"note: the scenario is dated {chart.today}; a service judges it as written "
                     f"when started with MYOCDS_TODAY={chart.today}")
    every_card: list[Mapping[str, Any]] = []
    status = 0
    for service in services:
        body = build_request(service, hook, chart, prefetch=not args.no_prefetch,
                             fhir_server=args.fhir_server)
        try:
            response = session.post(f"{base}/cds-services/{service.id}", json=body,
                                    timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise CallError(f"cannot reach {base}: {type(exc).__name__}") from None
        if response.status_code != 200:
            printer.line(printer.style(f"== {service.title} ({service.id}): HTTP "
                                        f"{response.status_code}{_diagnostics(response)}", _BOLD))
            printer.line()
            status = 1
            continue
        cards = response.json().get("cards") or []
        printer.service(service, len(cards))
        printer.line()
        for card in cards:
            printer.card(card)
        every_card.extend(cards)
    printer.summary(every_card)
    return status


@command("call", "Call every service of a hook with a patient's record and print the cards.",
         _arguments)
def call(args: argparse.Namespace) -> int:
    try:
        return run_call(args, sys.stdout)
    except CallError as exc:
        print(f"myocds call: {exc}", file=sys.stderr)
        return 2
