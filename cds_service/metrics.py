"""Prometheus metrics at ``GET /metrics`` (prometheus-client), one registry per app.

What an operator watches, and nothing about a patient: calls and latency per service and hook,
cards per rule topic and indicator, feedback per rule topic and outcome (what a CDS committee
watches: ``docker/grafana-feedback-dashboard.json``), fallback fetches to the EHR's FHIR server
and the calls they failed, and 4xx/5xx answers. Everything is read after the response is formed
(an ``after_request`` hook) from ``flask.g.call``, which ``protocol.routes`` and ``pipeline``
fill for the request log; label values are checked against what we declare, so a caller's words
never become a label (a path segment could be anything, a patient's name included, and every new
label value is a new time series).

Authentication: when ``MYOCDS_AUTH=required``, ``/metrics`` needs the same bearer JWT as every
other endpoint, unless ``MYOCDS_METRICS_PUBLIC=on`` (a scraper inside the cluster network that
cannot mint CDS client JWTs; keep ``/metrics`` off the public ingress then).

Several gunicorn workers: each worker process counts what it answered. When the environment
variable ``PROMETHEUS_MULTIPROC_DIR`` names a directory (``myocds serve`` sets one up whenever it
runs more than one worker), prometheus-client's multiprocess mode writes every worker's values
there and ``/metrics`` answers the sum over all workers, whichever worker serves the scrape.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from cds_service.services import SERVICES
from cds_service.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"  # label value for anything we did not declare

# Hook calls are bounded by MYOCDS_HOOK_DEADLINE_SECONDS (4 s default); the buckets span a no-op
# (a few ms) to past the deadline.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_CALL_ENDPOINTS = {"cds.call_service", "cds.feedback"}
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_INDICATORS = frozenset({"info", "warning", "critical"})
_OUTCOMES = frozenset({"accepted", "overridden"})
# A feedback item on a card this store did not issue has no rule.
UNKNOWN_RULE = "unknown"


class Metrics:
    """The service's metrics in one registry (a fresh one per app: tests do not leak)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[Any, ...], Any] = {}
        self.service_ids = frozenset(s.id for s in SERVICES)
        self.hooks = frozenset(s.hook for s in SERVICES) | {"feedback"}
        r = self.registry
        self.calls = Counter(
            "myocds_calls", "Service calls and feedback posts answered, by status",
            ["service", "hook", "status"], registry=r,
        )
        self.latency = Histogram(
            "myocds_call_duration_seconds",
            "Time from the request's arrival to its answer (authentication included)",
            ["service", "hook"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cards = Counter(
            "myocds_cards", "Cards returned, by rule topic (source.topic.code) and indicator",
            ["topic", "indicator"], registry=r,
        )
        self.feedback = Counter(
            "myocds_feedback",
            "Feedback items stored (a repeat of one already stored is not counted), by the rule "
            "of the card answered (source.topic.code; unknown: a card this store did not issue) "
            "and outcome",
            ["topic", "outcome"], registry=r,
        )
        self.card_failures = Counter(
            "myocds_card_render_failures",
            "Cards left out because they could not be rendered (the call's other cards were "
            "returned), by rule topic",
            ["topic"], registry=r,
        )
        self.fallback_calls = Counter(
            "myocds_fallback_calls",
            "Hook calls that fetched at least one prefetch key from the EHR's FHIR server",
            ["service", "hook"], registry=r,
        )
        self.fallback_requests = Counter(
            "myocds_fallback_requests",
            "HTTP requests sent to the EHR's FHIR server (search pages and reads)",
            ["service", "hook"], registry=r,
        )
        self.fallback_seconds = Histogram(
            "myocds_fallback_fetch_seconds",
            "Wall-clock time of a call's fallback fetches (all absent keys, fetched in parallel)",
            ["service", "hook"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.fallback_failures = Counter(
            "myocds_fallback_failures",
            "Hook calls answered 412: required FHIR data absent and not fetchable (server "
            "unreachable, refused, failing, too slow or not allowed)",
            ["service", "hook"], registry=r,
        )
        self.errors = Counter(
            "myocds_http_errors",
            "Answers with a 4xx or 5xx status on any path",
            ["class", "status"], registry=r,
        )  # fmt: skip

    # -- labels ------------------------------------------------------------------------------

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: prometheus-client checks the values and takes
        a lock on every ``labels`` call, and a request makes several. As many entries as the
        metrics have label sets (every value is one we declare or a rule code)."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _service(self, value: object) -> str:
        return value if isinstance(value, str) and value in self.service_ids else OTHER

    def _hook(self, value: object) -> str:
        return value if isinstance(value, str) and value in self.hooks else OTHER

    # -- one request -------------------------------------------------------------------------

    def observe(
        self,
        endpoint: str | None,
        view_args: Mapping[str, Any] | None,
        call: Mapping[str, Any] | None,
        status: int,
        seconds: float,
    ) -> None:
        """Count one answered request; ``call`` is ``g.call`` (None when refused before it)."""
        if status >= 400:
            self._child(self.errors, "5xx" if status >= 500 else "4xx", str(status)).inc()
        if endpoint not in _CALL_ENDPOINTS:
            return
        call = call or {}
        service = self._service(call.get("service") or (view_args or {}).get("service_id"))
        default_hook = "feedback" if endpoint == "cds.feedback" else None
        hook = self._hook(call.get("hook") or default_hook)
        self._child(self.calls, service, hook, str(status)).inc()
        self._child(self.latency, service, hook).observe(seconds)
        if endpoint == "cds.feedback":
            for topic, outcome in call.get("feedback_outcomes") or ():
                self._child(
                    self.feedback,
                    topic if isinstance(topic, str) and _CODE.match(topic) else UNKNOWN_RULE,
                    outcome if outcome in _OUTCOMES else OTHER,
                ).inc()
        if endpoint != "cds.call_service":
            return
        if status == 412:
            self._child(self.fallback_failures, service, hook).inc()
        fetches = call.get("fallback_fetches")
        if isinstance(fetches, int) and not isinstance(fetches, bool) and fetches > 0:
            self._child(self.fallback_calls, service, hook).inc()
            self._child(self.fallback_requests, service, hook).inc(fetches)
            fetch_ms = call.get("fallback_ms")
            if isinstance(fetch_ms, int | float) and not isinstance(fetch_ms, bool):
                self._child(self.fallback_seconds, service, hook).observe(fetch_ms / 1000)
        if status == 200:
            for failed in call.get("cards_failed") or ():
                topic_label = failed if isinstance(failed, str) and _CODE.match(failed) else OTHER
                self._child(self.card_failures, topic_label).inc()
            topics = call.get("card_topics") or ()
            indicators = call.get("card_indicators") or ()
            for topic, indicator in zip(topics, indicators, strict=False):
                topic_label = topic if isinstance(topic, str) and _CODE.match(topic) else OTHER
                indicator_label = indicator if indicator in _INDICATORS else OTHER
                self._child(self.cards, topic_label, indicator_label).inc()

    # -- exposition --------------------------------------------------------------------------

    def exposition(self) -> bytes:
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            # Every worker's values, summed (the per-app registry only holds this worker's).
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined, path=directory)
            return generate_latest(combined)
        return generate_latest(self.registry)


def install_metrics(app: Flask, settings: Settings) -> Metrics:
    """``GET /metrics`` and the hooks that count every request; returns the app's ``Metrics``."""
    from cds_service.protocol.auth import audience
    from cds_service.protocol.routes import state

    metrics = Metrics()
    app.extensions["myocds_metrics"] = metrics

    @app.before_request
    def _metrics_clock() -> None:
        # App-level before_request runs before the blueprint's authentication: a refused call's
        # latency counts too.
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("metrics_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        metrics.observe(
            request.endpoint, request.view_args, g.get("call"), response.status_code, seconds
        )
        return response

    def metrics_endpoint() -> Response:
        if settings.auth_required and not settings.metrics_public:
            g.caller = state().authenticator.verify(
                request.headers.get("Authorization"), audience(settings, request.path)
            )
        return Response(metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_endpoint, methods=["GET"])
    return metrics
