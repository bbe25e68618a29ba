"""myocds: CDS Hooks 2.0 service for statin myopathy, anti-HMGCR IMNM and IVIG stewardship."""

from __future__ import annotations

import logging
import weakref
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from cds_service.settings import Settings

if TYPE_CHECKING:
    from cds_service.cards_render import Templates
    from cds_service.catalogue import Catalogue

log = logging.getLogger("myocds")


class _JSONProvider(DefaultJSONProvider):
    """JSON as CDS Hooks and FHIR want it: members in the order written, FHIR decimals as
    numbers (Flask would write Decimal as a string) and dates in ISO 8601 (Flask: RFC 822).

    A compact answer (every answer but in debug mode) is written by orjson: the same JSON, but
    for non-ASCII text written as UTF-8 rather than escaped, in about a tenth of the time (an
    order-sign's four cards: ~1.5% of a call's CPU with the json module). Dates, Decimals and
    UUIDs still go through ``default``; what orjson refuses (a key that is not a string, an
    integer beyond 64 bits, a lone surrogate) is written by the json module as before."""

    sort_keys = False
    _COMPACT = {"separators": (",", ":")}

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == self._COMPACT:
            try:
                return orjson.dumps(
                    obj,
                    default=self.default,
                    option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS,
                ).decode()
            except orjson.JSONEncodeError:
                pass
        return super().dumps(obj, **kwargs)

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, UUID):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serializable")


def create_app(
    settings: Settings | None = None,
    *,
    catalogue: Catalogue | None = None,
    templates: Templates | None = None,
) -> Flask:
    """The Flask application: settings read once, card templates and the store opened once.

    Raises ``ConfigurationError`` (the service must not start) on bad settings (authentication
    required without ``MYOCDS_PUBLIC_BASE_URL``, an unusable database URL) or a broken card
    template, or hooks, rules, services and templates that disagree (``catalogue``: the shipped
    ``Catalogue`` unless given, as a test adding a hook gives one, with its own ``templates``).
    A database that is down is not one: the store connects on first use, ``/readyz`` says 503
    until it answers. The schema is the migrations' (``myocds migrate``).
    """
    from cds_service import pipeline
    from cds_service.catalogue import Catalogue
    from cds_service.errors import ConfigurationError
    from cds_service.fhir.client import FhirClient
    from cds_service.logs import install_logging
    from cds_service.metrics import install_metrics
    from cds_service.protocol.auth import PUBLIC_BASE_URL_REQUIRED, Authenticator
    from cds_service.protocol.cors import install_cors
    from cds_service.protocol.errors import register_error_handlers
    from cds_service.protocol.floor import install_floor
    from cds_service.protocol.openapi import install_openapi
    from cds_service.protocol.proxies import TrustedProxies
    from cds_service.protocol.routes import cds, discovery_document, health
    from cds_service.protocol.schemas import prepare_checkers
    from cds_service.protocol.state import AppState
    from cds_service.protocol.store import Store

    if settings is None:
        settings = Settings.from_env()
    if settings.auth_required and not settings.public_base_url:
        # The token's aud is checked against it; never against the Host a client sends.
        raise ConfigurationError(PUBLIC_BASE_URL_REQUIRED)
    if settings.public_base_url and not _is_base_url(settings.public_base_url):
        raise ConfigurationError(
            "MYOCDS_PUBLIC_BASE_URL must be an http(s) URL without query or fragment, "
            "e.g. https://cds.example.org"
        )
    app = Flask(__name__)
    install_logging(app, settings)
    if settings.today is not None:
        log.warning(
            "MYOCDS_TODAY=%s: the clinical date is PINNED for every call (validation runs only; "
            "never in clinical use)",
            settings.today.isoformat(),
        )
    # Templates first: a broken one stops start-up before anything is opened or created.
    catalogue = catalogue or Catalogue.shipped()
    if templates is None:
        templates = pipeline.load_templates(catalogue)
    else:
        catalogue.check(templates)
    prepare_checkers(catalogue.hooks)
    app.json = _JSONProvider(app)
    # A doubled slash (a discovery URL entered with a trailing slash) would otherwise get
    # werkzeug's HTML redirect, which a CORS preflight cannot follow: answer 404 JSON instead.
    app.url_map.merge_slashes = False
    app.config["MYOCDS_SETTINGS"] = settings
    # Werkzeug enforces this while reading too; protocol.body checks first for a clear message.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    store = Store(settings.database_url, pool_size=settings.threads)  # a connection per thread
    # Connections, pins and fetch threads of the calls' FHIR fetches (made on first use).
    fhir = FhirClient.from_settings(settings)
    weakref.finalize(app, fhir.close)
    app.extensions["myocds"] = AppState(
        settings=settings,
        # Seen jtis in Redis when configured, else in the feedback database: every worker's.
        authenticator=Authenticator(settings, store=store),
        store=store,
        templates=templates,
        discovery=discovery_document(catalogue),
        catalogue=catalogue,
        fhir=fhir,
    )
    install_cors(app, settings)
    register_error_handlers(app)
    app.register_blueprint(cds)
    app.register_blueprint(health)
    install_openapi(app, settings)
    if settings.try_enabled:
        # The try-it pages exist only when enabled: otherwise /try is an ordinary 404.
        from cds_service.tryit import install_tryit

        install_tryit(app, settings)
    from cds_service.tryit.report import install_site_pages

    install_site_pages(app, settings)  # /try/sites with the try pages; /try/report (issue 15)
    install_metrics(app, settings)
    install_floor(app, settings)
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    return app


def _is_base_url(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not (
        parts.query or parts.fragment or "?" in value or "#" in value
    )
