"""staff uploads

Revision ID: 0008
Revises: 0007
CSV files an admin uploaded on the staff page, kept from the preview of their import until it is
applied (and then deleted).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('staff_upload',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('hospital_id', sa.Integer(), nullable=False),
    sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_account.id'], ),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_staff_upload_account_id'), 'staff_upload', ['account_id'], unique=False)
    op.create_index(op.f('ix_staff_upload_created_at'), 'staff_upload', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_staff_upload_created_at'), table_name='staff_upload')
    op.drop_index(op.f('ix_staff_upload_account_id'), table_name='staff_upload')
    op.drop_table('staff_upload')
