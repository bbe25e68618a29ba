"""The try-it blueprint: routes, page state from the URL, security headers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from cds_service.advice.model import INDICATOR_ORDER
from cds_service.catalogue import Catalogue
from cds_service.errors import BadRequest, MyocdsError
from cds_service.protocol.body import read_json_body
from cds_service.protocol.errors import handle_myocds_error
from cds_service.protocol.schemas import validate
from cds_service.settings import Settings
from cds_service.tryit.drafts import IVIG, KIND_LABELS, PRODUCTS, parse_draft
from cds_service.tryit.examples import (
    Examples,
    View,
    age_on,
    load_examples,
    record_on,
    requests_for,
    shift_days,
)
from cds_service.tryit.gallery import build_gallery
from cds_service.tryit.inprocess import ServiceRun, fullest_record, run_view
from cds_service.tryit.markdown import render_markdown, safe_link
from cds_service.tryit.timeline import Timeline, build_timeline, render_svg

EXTENSION = "myocds_tryit"
# The pages load nothing from elsewhere and run only our own script: a card text that slipped
# past the escaping still could not load or run anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The most a browser sends to POST /try/cards: the responses of one view's services.
MAX_CARDS_BODY_BYTES = 2 * 1024 * 1024
_HTML_ENDPOINTS = frozenset({"tryit.page", "tryit.rules"})

tryit = Blueprint(
    "tryit",
    __name__,
    url_prefix="/try",
    template_folder="templates",
    static_folder="static",
)


@dataclass(frozen=True)
class TryState:
    examples: Examples


def install_tryit(app: Flask, settings: Settings) -> None:
    """Load the examples (a broken one stops start-up) and register the pages."""
    app.extensions[EXTENSION] = TryState(examples=load_examples())
    app.jinja_env.filters["card_markdown"] = lambda text: Markup(render_markdown(text))
    app.jinja_env.filters["safe_url"] = lambda url: isinstance(url, str) and safe_link(url)
    app.jinja_env.filters["pretty_json"] = lambda value: json.dumps(
        value, indent=2, ensure_ascii=False
    )
    app.register_blueprint(tryit)


def _examples() -> Examples:
    return current_app.extensions[EXTENSION].examples


def _settings() -> Settings:
    return current_app.extensions["myocds"].settings


def _templates() -> Any:
    return current_app.extensions["myocds"].templates


def _catalogue() -> Catalogue:
    catalogue: Catalogue = current_app.extensions["myocds"].catalogue
    return catalogue


def service_today() -> date:
    """The date the service judges calls on (``MYOCDS_TODAY`` or the real clock): the examples'
    dates are moved to it so the page shows the cards the service itself gives."""
    return _settings().today or date.today()


def parse_view(args: MultiDict[str, str]) -> View:
    """The view a URL asks for. ``NotFound`` for an example that is not shipped; ``BadRequest``
    for an unknown hook or product or a dose or day count out of bounds."""
    example = _examples().get(args.get("example"))
    hooks = _catalogue().hooks
    hook = args.get("hook") or example.hook
    if hook not in hooks:
        raise BadRequest(f"hook must be one of {', '.join(hooks.names())}", expression="hook")
    draft = parse_draft(args.get("product"), args.get("dose"), args.get("days"), example.draft)
    return View(example, hook, draft, hooks)


@tryit.after_request
def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@tryit.errorhandler(MyocdsError)
def page_error(exc: MyocdsError) -> Response:
    """The pages answer a human in HTML; the JSON and SVG endpoints with an OperationOutcome."""
    if request.endpoint not in _HTML_ENDPOINTS or exc.status >= 500:
        return handle_myocds_error(exc)
    body = render_template("tryit/error.html", status=exc.status, message=exc.message)
    return Response(body, status=exc.status, mimetype="text/html")


@tryit.get("/")
@tryit.get("")  # applied first: the rule url_for builds, so links read /try?example=...
def page() -> str:
    view = parse_view(request.args)
    today = service_today()
    example = view.example
    runs = run_view(view, today, _settings(), _templates(), _catalogue())
    timeline = _timeline(runs, today)
    patient = next(
        entry["resource"]
        for entry in record_on(example, today)["entry"]
        if entry["resource"]["resourceType"] == "Patient"
    )
    query = view.query()
    return render_template(
        "tryit/page.html",
        view=view,
        examples=list(_examples()),
        hooks=_catalogue().hooks.names(),
        hook_labels={hook.name: hook.title for hook in _catalogue().hooks},
        product_groups=_product_groups(),
        is_ivig=view.draft.product.kind == IVIG,
        patient=_patient_banner(patient, today),
        today=today,
        shift=shift_days(example, today),
        services=[run.service for run in runs],
        timeline=Markup(render_svg(timeline, title=f"CK ÷ ULN: {example.title}")),
        timeline_points=len(timeline.points),
        query=query,
        page_url=url_for("tryit.page", **query),  # type: ignore[arg-type]
        request_url=url_for("tryit.request_json", **query),  # type: ignore[arg-type]
        cards_url=url_for("tryit.cards"),
        timeline_url=url_for("tryit.timeline_svg", **query),  # type: ignore[arg-type]
        auth_required=_settings().auth_required,
    )


@tryit.get("/request")
def request_json() -> Response:
    """The request bodies of a view, one per service of its hook, with where to POST each."""
    view = parse_view(request.args)
    today = service_today()
    calls = [
        {
            "serviceId": service.id,
            "title": service.title,
            "path": url_for("cds.call_service", service_id=service.id),
            "request": body,
        }
        for service, body in requests_for(view, today, _catalogue().services)
    ]
    return jsonify(
        {
            "example": view.example.name,
            "hook": view.hook,
            "today": today.isoformat(),
            "exampleToday": view.example.today.isoformat(),
            "shiftDays": shift_days(view.example, today),
            "calls": calls,
        }
    )


@tryit.post("/cards")
def cards() -> Response:
    """``{"responses": [{"serviceId": id, "response": <CDS Hooks response>}, ...]}`` → the cards
    of all of them as HTML, most urgent first (as the Sandbox merges and sorts them)."""
    settings = _settings()
    body = read_json_body(request, MAX_CARDS_BODY_BYTES, settings.max_json_depth)
    responses = body.get("responses") if isinstance(body, dict) else None
    if not isinstance(responses, list):
        raise BadRequest("expected {\"responses\": [...]}", expression="responses")
    shown: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(responses):
        if not isinstance(item, dict) or not isinstance(item.get("serviceId"), str):
            raise BadRequest("each response needs a serviceId", expression=f"responses[{index}]")
        validate("response", item.get("response"))
        shown.extend((item["serviceId"], card) for card in item["response"]["cards"])
    shown.sort(key=lambda pair: INDICATOR_ORDER.get(str(pair[1].get("indicator")), 3))
    html = render_template("tryit/cards.html", cards=shown)
    return Response(html, mimetype="text/html")


@tryit.get("/timeline.svg")
def timeline_svg() -> Response:
    view = parse_view(request.args)
    today = service_today()
    timeline = _timeline(run_view(view, today, _settings(), _templates(), _catalogue()), today)
    svg = render_svg(timeline, title=f"CK ÷ ULN: {view.example.title}")
    return Response(svg, mimetype="image/svg+xml")


@tryit.get("/rules")
def rules() -> str:
    today = service_today()
    from cds_service.tryit.report import site_policies

    sites = site_policies()  # each site's own values beside the defaults (issue 15)
    entries = build_gallery(_templates(), _examples(), _settings(), today, sites)
    return render_template(
        "tryit/rules.html",
        entries=entries,
        uncovered=[e for e in entries if not e.covered],
        examples=list(_examples()),
        today=today,
    )


def _timeline(runs: list[ServiceRun], today: date) -> Timeline:
    """The record with the IVIG doses given, and the CK values every service's advice used."""
    return build_timeline(fullest_record(runs), today, [a for run in runs for a in run.advices])


def _product_groups() -> list[tuple[str, list[Any]]]:
    groups: dict[str, list[Any]] = {}
    for product in PRODUCTS.values():
        groups.setdefault(product.kind, []).append(product)
    return [(KIND_LABELS[kind], items) for kind, items in groups.items()]


def _patient_banner(patient: dict[str, Any], today: date) -> dict[str, Any]:
    names = patient.get("name") or [{}]
    name = names[0]
    text = " ".join([*name.get("given", []), name.get("family", "")]).strip()
    return {
        "name": text or "(no name)",
        "gender": patient.get("gender") or "unknown",
        "age": age_on(patient.get("birthDate"), today),
        "birth_date": patient.get("birthDate"),
        "id": patient.get("id"),
    }
