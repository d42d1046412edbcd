"""The case label is stored encrypted (issue 12, privacy): a Fernet token is longer than the
200 characters of the label it hides, so the column becomes text.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.alter_column("label", type_=sa.Text(), existing_type=sa.String(200),
                           existing_nullable=True)


def downgrade() -> None:
    # an encrypted label does not fit the old column (and the old code cannot read it anyway)
    op.execute("UPDATE audit_records SET label = NULL WHERE length(label) > 200")
    with op.batch_alter_table("audit_records") as batch:
        batch.alter_column("label", type_=sa.String(200), existing_type=sa.Text(),
                           existing_nullable=True)
