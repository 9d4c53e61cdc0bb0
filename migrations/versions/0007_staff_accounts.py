"""staff accounts

Revision ID: 0007
Revises: 0006
Accounts of hospital staff for the ward's own page, and the network addresses that gave wrong
passwords (kept as keyed hashes) so that each further guess from one of them waits longer.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('staff_login_address',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('retry_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_staff_login_address_address_hash'), 'staff_login_address', ['address_hash'], unique=True)
    op.create_table('staff_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hospital_id', sa.Integer(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('wards', sa.JSON(), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('disabled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('session_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_staff_account_hospital_id'), 'staff_account', ['hospital_id'], unique=False)
    op.create_index(op.f('ix_staff_account_username'), 'staff_account', ['username'], unique=True)


def downgrade() -> None:
    op.drop_index(op.f('ix_staff_account_username'), table_name='staff_account')
    op.drop_index(op.f('ix_staff_account_hospital_id'), table_name='staff_account')
    op.drop_table('staff_account')
    op.drop_index(op.f('ix_staff_login_address_address_hash'), table_name='staff_login_address')
    op.drop_table('staff_login_address')
