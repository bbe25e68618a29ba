"""Two pages beside the card review gallery for a site's CDS committee (issue 15).

- ``GET /try/report``: the feedback report of ``myocds feedback-report`` (per site × rule ×
  version: cards shown, accepted, overridden by reason, no answer, acceptance rate), as HTML, or
  ``?format=json`` / ``?format=csv``. Served when ``MYOCDS_REPORT_PAGE=on``, or by default when
  the try-it pages are (development: authentication off); off in production otherwise. With
  authentication required it takes the same bearer JWT as ``/metrics`` (``aud`` = the public base
  URL + ``/try/report``), and a caller sees its own site's lines only (an issuer entry without a
  tenant: every tenant of that issuer).
- ``GET /try/sites``: each site of the issuers file with its policy (``cds_service.policy``): its
  setting values beside the deployment's defaults, and the rules it switched off. Served with the
  try-it pages.
"""

from __future__ import annotations

import io
import logging

from flask import Flask, Response, current_app, g, jsonify, render_template_string, request

from cds_service.commands.report import (
    TABLE_HEADERS,
    as_json,
    by_site,
    collect,
    print_csv,
    site_label,
    table_rows,
)
from cds_service.errors import BadRequest, ConfigurationError
from cds_service.policy import SitePolicy, describe
from cds_service.protocol.auth import ANONYMOUS, audience, load_trusted_issuers
from cds_service.settings import Settings

log = logging.getLogger(__name__)

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_REPORT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback report · myocds</title></head>
<body>
<h1>Feedback report</h1>
<p>How clinicians answered each rule's cards, per site, rule and rule version. Acceptance is over
the cards answered (accepted or overridden). Also as <a href="?format=json">JSON</a> and
<a href="?format=csv">CSV</a>; the same as <code>myocds feedback-report</code>.</p>
{% if not sites %}<p id="empty">No cards issued and no feedback stored yet.</p>{% endif %}
{% for site, rows, reports in sites %}
<section class="site" data-site="{{ site }}">
<h2>{{ site }}</h2>
<table>
<thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}<th>override reasons</th></tr></thead>
<tbody>
{% for row in rows %}{% set r = reports[loop.index0] %}
<tr data-topic="{{ r.topic }}" data-version="{{ r.version }}">
{%- for cell in row %}<td>{{ cell }}</td>{% endfor %}<td>
{%- for code, n in r.override_reasons.items() -%}
<span data-reason="{{ code }}">{{ code }} {{ n }}</span> {% endfor %}</td></tr>
{% endfor %}
</tbody></table>
</section>
{% endfor %}
</body></html>
"""

_SITES_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Site policies · myocds</title></head>
<body>
<h1>Site policies</h1>
<p>Each site (an issuer, or a tenant within an issuer, of <code>MYOCDS_ISSUERS_FILE</code>) may set
its own values for the settings rules.md marks "(setting)" and switch rules off. A call is decided
with its caller's policy. Deployment defaults are this service's settings. See also the
<a href="rules">card review gallery</a>{% if report %} and the
<a href="report">feedback report</a>{% endif %}.</p>
{% if not sites %}<p id="no-sites">No issuers file: every caller gets the defaults.</p>{% endif %}
{% for site in sites %}
<section class="site" data-site="{{ site.label }}">
<h2>{{ site.label }}</h2>
{% if site.rows %}
<table><thead><tr><th>setting</th><th>default</th><th>this site</th></tr></thead><tbody>
{% for name, default, value in site.rows %}
<tr data-setting="{{ name }}"><td><code>{{ name }}</code></td>
<td class="default">{{ default }}</td><td class="site-value">{{ value }}</td></tr>
{% endfor %}</tbody></table>
{% else %}<p>The defaults for every setting.</p>{% endif %}
<p>Rules switched off: {% for rule in site.disabled -%}
<code data-disabled="{{ rule }}">{{ rule }}</code> {% else %}none{% endfor %}</p>
</section>
{% endfor %}
</body></html>
"""


def install_site_pages(app: Flask, settings: Settings) -> None:
    """``/try/sites`` with the try-it pages, ``/try/report`` when the report page is on."""
    if settings.try_enabled:
        app.add_url_rule("/try/sites", "site_policies", _sites_page, methods=["GET"])
    if settings.report_page_enabled:
        app.add_url_rule("/try/report", "feedback_report", _report_page, methods=["GET"])


def _settings() -> Settings:
    settings: Settings = current_app.extensions["myocds"].settings
    return settings


def _secured(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


def _report_page() -> Response:
    settings = _settings()
    app_state = current_app.extensions["myocds"]
    caller = ANONYMOUS
    if settings.auth_required:
        # As /metrics: the bearer JWT of a trusted client, its aud this page's URL.
        caller = app_state.authenticator.verify(
            request.headers.get("Authorization"), audience(settings, request.path)
        )
        g.caller = caller
    site = (caller.issuer, caller.tenant) if settings.auth_required else None
    reports = collect(app_state.store, site)
    wanted = request.args.get("format", "html")
    if wanted == "json":
        return _secured(jsonify({"report": as_json(reports)}))
    if wanted == "csv":
        out = io.StringIO()
        print_csv(reports, out)
        return _secured(Response(out.getvalue(), mimetype="text/csv"))
    if wanted != "html":
        raise BadRequest("format must be html, json or csv", expression="format")
    sites = [(name, table_rows(lines), lines) for name, lines in by_site(reports).items()]
    html = render_template_string(_REPORT_PAGE, sites=sites, headers=TABLE_HEADERS)
    return _secured(Response(html, mimetype="text/html"))


def site_policies() -> list[tuple[str, SitePolicy]]:
    """Each site of the issuers file (an issuer, or a tenant of one) with its policy."""
    settings = _settings()
    authenticator = current_app.extensions["myocds"].authenticator
    issuers = authenticator.issuers
    if not issuers and settings.issuers_file:
        # Authentication off: the file was not read at start-up; a broken one shows no sites
        # here (with authentication on it stops start-up).
        try:
            issuers = load_trusted_issuers(settings)
        except ConfigurationError as exc:
            log.warning("issuers file not shown on the try-it pages: %s", exc.message)
    return [
        (site_label(entry.iss, entry.tenant), entry.policy)
        for entries in issuers.values()
        for entry in entries
    ]


def _sites_page() -> Response:
    settings = _settings()
    sites = [
        {
            "label": label,
            "rows": describe(policy, settings.clinical),
            "disabled": sorted(policy.disabled_rules),
        }
        for label, policy in site_policies()
    ]
    html = render_template_string(_SITES_PAGE, sites=sites, report=settings.report_page_enabled)
    return _secured(Response(html, mimetype="text/html"))
