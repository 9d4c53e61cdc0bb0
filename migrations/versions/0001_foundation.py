"""foundation

Revision ID: 0001
Revises: 
Hospitals, their admissions, the append-only history of condition updates, and the audit.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('hospital',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('helpline', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('time_zone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('api_key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('api_key_issued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('show_vitals', sa.Boolean(), nullable=False),
    sa.Column('show_remarks', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('hospital', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hospital_code'), ['code'], unique=True)

    op.create_table('admission',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hospital_id', sa.Integer(), nullable=False),
    sa.Column('registration_no', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('patient_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('age', sa.Integer(), nullable=True),
    sa.Column('sex', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
    sa.Column('contact_mobile', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('ward', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('bed', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('admitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('transferred_to', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('status_remarks', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hospital_id', 'registration_no')
    )
    with op.batch_alter_table('admission', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admission_contact_mobile'), ['contact_mobile'], unique=False)
        batch_op.create_index(batch_op.f('ix_admission_hospital_id'), ['hospital_id'], unique=False)

    op.create_table('alternate_mobile',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('admission_id', sa.Integer(), nullable=False),
    sa.Column('mobile', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.ForeignKeyConstraint(['admission_id'], ['admission.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('admission_id', 'mobile')
    )
    with op.batch_alter_table('alternate_mobile', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alternate_mobile_admission_id'), ['admission_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alternate_mobile_mobile'), ['mobile'], unique=False)

    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('hospital_id', sa.Integer(), nullable=True),
    sa.Column('admission_id', sa.Integer(), nullable=True),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['admission_id'], ['admission.id'], ),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_admission_id'), ['admission_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_hospital_id'), ['hospital_id'], unique=False)

    op.create_table('condition_update',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('admission_id', sa.Integer(), nullable=False),
    sa.Column('condition', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('care_area', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('respiratory_support', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('spo2', sa.Integer(), nullable=True),
    sa.Column('pulse', sa.Integer(), nullable=True),
    sa.Column('bp_systolic', sa.Integer(), nullable=True),
    sa.Column('bp_diastolic', sa.Integer(), nullable=True),
    sa.Column('temperature_c', sa.Float(), nullable=True),
    sa.Column('resp_rate', sa.Integer(), nullable=True),
    sa.Column('blood_sugar', sa.Integer(), nullable=True),
    sa.Column('remarks', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.ForeignKeyConstraint(['admission_id'], ['admission.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('condition_update', schema=None) as batch_op:
        batch_op.create_index('ix_condition_update_latest', ['admission_id', 'recorded_at', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('condition_update', schema=None) as batch_op:
        batch_op.drop_index('ix_condition_update_latest')

    op.drop_table('condition_update')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_hospital_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_admission_id'))

    op.drop_table('audit_event')
    with op.batch_alter_table('alternate_mobile', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alternate_mobile_mobile'))
        batch_op.drop_index(batch_op.f('ix_alternate_mobile_admission_id'))

    op.drop_table('alternate_mobile')
    with op.batch_alter_table('admission', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admission_hospital_id'))
        batch_op.drop_index(batch_op.f('ix_admission_contact_mobile'))

    op.drop_table('admission')
    with op.batch_alter_table('hospital', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hospital_code'))

    op.drop_table('hospital')
