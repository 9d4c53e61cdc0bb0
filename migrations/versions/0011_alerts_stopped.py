"""alerts stopped

Revision ID: 0011
Revises: 0010
Whether a chat's alerts are off until /start (it sent /stop, or refused us for good): such a
chat is told of nothing, a new admission under its number included. Chats whose every
subscription has its alerts off while one of those patients is still admitted are such chats.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerts_stopped', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE chat SET alerts_stopped = true"
        " WHERE NOT EXISTS (SELECT 1 FROM subscription WHERE subscription.chat_id = chat.id AND subscription.alerts)"
        " AND EXISTS (SELECT 1 FROM subscription JOIN admission ON admission.id = subscription.admission_id"
        " WHERE subscription.chat_id = chat.id AND admission.status = 'admitted')"
    )


def downgrade() -> None:
    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.drop_column('alerts_stopped')
