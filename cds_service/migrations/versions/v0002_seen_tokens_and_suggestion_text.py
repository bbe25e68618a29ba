"""Seen JWT ids (replay protection shared by every worker and replica without Redis); the
accepted suggestion ids as text (16 ids of 128 characters did not fit the 2,000 of 0001).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_tokens",
        # sha256 of issuer and jti: bounded, and no raw token ids at rest.
        sa.Column("token_key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),  # Unix seconds
    )
    op.create_index("ix_seen_tokens_expires_at", "seen_tokens", ["expires_at"])
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column(
            "accepted_suggestions", type_=sa.Text, existing_type=sa.String(2000),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column(
            "accepted_suggestions", type_=sa.String(2000), existing_type=sa.Text,
            existing_nullable=True,
        )
    op.drop_index("ix_seen_tokens_expires_at", "seen_tokens")
    op.drop_table("seen_tokens")
