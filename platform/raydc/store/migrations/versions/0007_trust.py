"""trust: token expiry, last use and job scope; storage quotas and what is stored

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_api_tokens_job_id", ["job_id"], unique=False)
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_storage_gb", sa.Float(), nullable=True))
    with op.batch_alter_table("code_bundles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unpacked_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("artifact_bytes")
    with op.batch_alter_table("code_bundles", schema=None) as batch_op:
        batch_op.drop_column("unpacked_bytes")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("quota_storage_gb")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_api_tokens_job_id")
        batch_op.drop_column("job_id")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
