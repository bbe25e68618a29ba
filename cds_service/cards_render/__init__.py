"""Cards: card templates (``cards/*.json``) + ``Advice`` → CDS Hooks 2.0 cards.

- ``load_templates(cards_dir=None) -> Templates``: load and check every template and
  ``cards/sources.json`` once at start-up; a broken one raises ``ConfigurationError``.
- ``render(advices, record, templates, hook) -> list[dict]``: the cards, with FHIR R4 suggestions.
"""

from cds_service.cards_render.render import (
    ADVICE_SYSTEM,
    OVERRIDE_REASON_SYSTEM,
    CardRenderError,
    render,
    render_card,
)
from cds_service.cards_render.templates import (
    CARDS_DIR_ENV,
    CardTemplate,
    OverrideReason,
    Source,
    Templates,
    load_templates,
)

__all__ = [
    "ADVICE_SYSTEM",
    "CARDS_DIR_ENV",
    "OVERRIDE_REASON_SYSTEM",
    "CardRenderError",
    "CardTemplate",
    "OverrideReason",
    "Source",
    "Templates",
    "load_templates",
    "render",
    "render_card",
]
