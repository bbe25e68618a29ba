"""What an advice function returns: the decision and the values behind it, no wording.

Wording, sources, links and suggestion labels live in the card templates (``cards/<RULE>.json``);
``cds_service.cards_render`` joins the two. An ``Advice`` carries everything the card must show:
the key values for the summary (``values``, formatted strings keyed by template placeholder), the
values used with their dates (``facts``), what was converted, assumed or uncertain (``caveats``),
calculation lines (``rows``) and structured suggestions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from cds_service.record.model import MedicationUse

# A card's urgency (CDS Hooks 2.0 Card.indicator), most urgent first.
Indicator = Literal["critical", "warning", "info"]
INDICATOR_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Fact:
    """One value the decision used, shown in the card's "Values used" table."""

    label: str  # "CK", "Serum IgA", "Weight"
    value: str  # "6,950 U/L (22.6×ULN)", "<5 mg/dL"
    day: date | None = None
    note: str | None = None  # "assumed ULN 192 U/L", "converted from 0.07 g/L", "preliminary"


@dataclass(frozen=True)
class Suggestion:
    """A suggestion in structured form; the renderer builds the FHIR resource and the label.

    kind:
    - ``order-lab``: create a ServiceRequest (status draft, intent order) for ``loinc``.
    - ``delete-draft``: delete the drafted order ``target`` (by resourceId).
    - ``update-draft``: update the drafted IVIG order ``target`` to ``dose_g`` per day for ``days``.
    - ``stop-active``: update the active order ``target`` to status stopped.
    """

    kind: str
    loinc: str | None = None
    target: MedicationUse | None = None
    dose_g: Decimal | None = None
    days: int | None = None
    recommended: bool = False


@dataclass(frozen=True)
class Advice:
    rule_id: str  # "STAT-01"; also the card template name and source.topic code
    indicator: Indicator
    values: Mapping[str, str] = field(default_factory=dict)
    facts: tuple[Fact, ...] = ()
    caveats: tuple[str, ...] = ()
    rows: tuple[tuple[str, str], ...] = ()  # calculation lines (label, value), e.g. DOSE-01
    suggestions: tuple[Suggestion, ...] = ()
    ck_trend: bool = False  # True for every CK-driven card: the renderer adds the trend table
