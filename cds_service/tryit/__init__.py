"""The try-it pages: example patients, their cards as an EHR shows them, a CK timeline, the card
review gallery.

Registered by ``create_app`` only when ``settings.try_enabled`` (``MYOCDS_AUTH=off`` or
``MYOCDS_TRY=on``); otherwise every ``/try`` path is a plain 404. The pages only ever show the
shipped examples (``examples/``): they take no patient data and call no FHIR server.

- ``GET /try``: pick an example patient, a hook and (on the order hooks) a drafted statin or IVIG
  order; the page's script builds each call with ``GET /try/request`` and sends it to the
  service's own ``POST /cds-services/{id}``, over HTTP, as an EHR does.
- ``GET /try/request``: the CDS Hooks request bodies for a view (one per service of the hook).
- ``POST /try/cards``: CDS Hooks responses → the cards as HTML (``detail`` Markdown rendered
  safely, ``tryit.markdown``), so the page and the gallery draw cards the same way.
- ``GET /try/timeline.svg``: the CK timeline of an example (``tryit.timeline``).
- ``GET /try/rules``: the card review gallery (``tryit.gallery``).
"""

from cds_service.tryit.examples import (
    View,
    context_for,
    load_examples,
    request_body,
    requests_for,
)
from cds_service.tryit.views import install_tryit

__all__ = [
    "View",
    "context_for",
    "install_tryit",
    "load_examples",
    "request_body",
    "requests_for",
]
