"""kept language

Revision ID: 0010
Revises: 0009
The language a chat had chosen, kept by /forget under the chat's pseudonym until it writes again.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('kept_language',
    sa.Column('chat_pseudonym', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('kept_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('chat_pseudonym')
    )


def downgrade() -> None:
    op.drop_table('kept_language')
