"""The feedback loop a CDS committee reads (issue 15): each issued card and each feedback row
carries the rule's version and the caller's site (issuer, tenant); a feedback row also carries
the rule (topic) of its card, looked up from ``issued_cards`` when it is stored. Rows from before
this revision get their feedback's topic from the card they answer; their versions and sites stay
unknown (NULL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _site_and_version() -> list[sa.Column]:
    return [
        sa.Column("rule_version", sa.String(32), nullable=True),
        sa.Column("site_issuer", sa.String(512), nullable=True),
        sa.Column("site_tenant", sa.String(256), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        for column in _site_and_version():
            batch.add_column(column)
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("topic", sa.String(64), nullable=True))
        for column in _site_and_version():
            batch.add_column(column)
    op.create_index("ix_feedback_topic", "feedback", ["topic"])
    op.execute(
        "UPDATE feedback SET topic = (SELECT issued_cards.topic FROM issued_cards "
        "WHERE issued_cards.card_uuid = feedback.card_uuid)"
    )


def downgrade() -> None:
    op.drop_index("ix_feedback_topic", "feedback")
    with op.batch_alter_table("feedback") as batch:
        for name in ("site_tenant", "site_issuer", "rule_version", "topic"):
            batch.drop_column(name)
    with op.batch_alter_table("issued_cards") as batch:
        for name in ("site_tenant", "site_issuer", "rule_version"):
            batch.drop_column(name)
