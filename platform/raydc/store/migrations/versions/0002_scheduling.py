"""scheduling: tenant weight and borrowing limits, per-job run and stop state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weight", sa.Float(), server_default="1.0", nullable=False))
        batch_op.add_column(sa.Column("borrow_cpu", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("borrow_gpu", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("borrow_memory_gb", sa.Float(), nullable=True))

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workers", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("placement", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("preemptions", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("run_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("attained_gpu_s", sa.Float(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("last_checkpoint_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("stop_action", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("stop_for", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("target_workers", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("target_workers")
        batch_op.drop_column("stop_for")
        batch_op.drop_column("stop_action")
        batch_op.drop_column("last_checkpoint_at")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("attained_gpu_s")
        batch_op.drop_column("run_started_at")
        batch_op.drop_column("preemptions")
        batch_op.drop_column("placement")
        batch_op.drop_column("workers")

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("borrow_memory_gb")
        batch_op.drop_column("borrow_gpu")
        batch_op.drop_column("borrow_cpu")
        batch_op.drop_column("weight")
