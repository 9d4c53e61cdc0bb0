"""notifications outbox

Revision ID: 0003
Revises: 0002
The outbox of alerts, chats' quiet hours and reachability, retracted condition updates.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=False),
    sa.Column('admission_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('before', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('claimed_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.ForeignKeyConstraint(['admission_id'], ['admission.id'], ),
    sa.ForeignKeyConstraint(['chat_id'], ['chat.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_admission_id'), ['admission_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_chat_id'), ['chat_id'], unique=False)
        batch_op.create_index('ix_notification_due', ['status', 'priority', 'created_at'], unique=False)

    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quiet_from', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('quiet_until', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('unreachable_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    with op.batch_alter_table('condition_update', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retracted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('condition_update', schema=None) as batch_op:
        batch_op.drop_column('retracted_at')

    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.drop_column('unreachable_at')
        batch_op.drop_column('quiet_until')
        batch_op.drop_column('quiet_from')

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_due')
        batch_op.drop_index(batch_op.f('ix_notification_chat_id'))
        batch_op.drop_index(batch_op.f('ix_notification_admission_id'))

    op.drop_table('notification')
