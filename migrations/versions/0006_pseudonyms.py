"""pseudonyms for relatives' chats and numbers

Revision ID: 0006
Revises: 0005
Relatives' chats are named by pseudonyms (`bot.platform.security.pseudonym`) wherever a record
outlives them: the audit trail names a chat `whatsapp:ps_…` instead of `whatsapp:+91…`, and the
code requests keep the chat and the number only as pseudonyms (`chat_pseudonym`,
`mobile_pseudonym`), so that /forget and the retention period leave no number behind.

Rows written before this revision are rewritten here, once, rather than by housekeeping on every
run: the upgrade is the moment the meaning of these columns changes, and the service could not
tell an old clear-text row from a new one without looking at every audit row again and again.
The pseudonyms need SECRET_KEY, which this upgrade reads as the service reads it (the environment,
or locally `data/secret_key`: `Settings.secret_key_or_local`), so `python -m bot db upgrade` must
run with the service's environment, as the Procfile and `make run` do. A database with no such
rows (a new one) needs no key.

Downgrading cannot turn pseudonyms back into numbers: the audit trail keeps its pseudonyms, and
the code requests, which live a day and no longer fit the narrower column, are deleted.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from bot.platform.security import pseudonym
from bot.platform.settings import load_settings


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ROWS_PER_STATEMENT = 500

audit_event = sa.table(
    'audit_event', sa.column('id', sa.Integer), sa.column('actor', sa.String), sa.column('channel', sa.String)
)
otp_challenge = sa.table(
    'otp_challenge', sa.column('id', sa.Integer), sa.column('chat_pseudonym', sa.String),
    sa.column('mobile_pseudonym', sa.String),
)


def _secret_key() -> bytes:
    """SECRET_KEY, read as the service reads it."""
    return load_settings().secret_key_or_local()


def _rewrite(table: sa.TableClause, columns: tuple[str, ...], which, new_values) -> None:
    """Rewrite `columns` of the rows `which` selects, a chunk at a time: `new_values(secret_key,
    row)` gives each row's new values, by column."""
    connection = op.get_bind()
    if connection.execute(sa.select(table.c.id).where(which).limit(1)).first() is None:
        return
    secret_key = _secret_key()
    statement = (
        sa.update(table).where(table.c.id == sa.bindparam('row_id'))
        .values({column: sa.bindparam(f'new_{column}') for column in columns})
    )
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(table.c.id, *(table.c[column] for column in columns))
            .where(which, table.c.id > last_id).order_by(table.c.id).limit(ROWS_PER_STATEMENT)
        ).all()
        if not rows:
            return
        connection.execute(statement, [
            {'row_id': row.id, **{f'new_{column}': value for column, value in new_values(secret_key, row).items()}}
            for row in rows
        ])
        last_id = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table('otp_challenge', schema=None) as batch_op:
        batch_op.drop_index('ix_otp_challenge_chat_created')
        batch_op.drop_index('ix_otp_challenge_mobile_created')
        batch_op.alter_column('chat_key', new_column_name='chat_pseudonym',
                              existing_type=sa.String(length=96), existing_nullable=False)
        batch_op.alter_column('mobile', new_column_name='mobile_pseudonym',
                              existing_type=sa.String(length=20),
                              type_=sa.String(length=96), existing_nullable=False)
    op.create_index('ix_otp_challenge_chat_created', 'otp_challenge', ['chat_pseudonym', 'created_at'], unique=False)
    op.create_index('ix_otp_challenge_mobile_created', 'otp_challenge', ['mobile_pseudonym', 'created_at'], unique=False)

    # Code requests were made with the chat as `channel:chat` and the number in E.164.
    _rewrite(
        otp_challenge, ('chat_pseudonym', 'mobile_pseudonym'), sa.true(),
        lambda key, row: {
            'chat_pseudonym': pseudonym(key, row.chat_pseudonym), 'mobile_pseudonym': pseudonym(key, row.mobile_pseudonym),
        },
    )
    # Relatives' rows are those with a channel; their actor was `channel:chat`. Hospitals' actors
    # (api:MRB, csv:MRB, cli, demo) have none and stay as they are.
    _rewrite(
        audit_event, ('actor',), audit_event.c.channel.is_not(None),
        lambda key, row: {'actor': f'{row.actor.partition(":")[0]}:{pseudonym(key, row.actor)}'},
    )


def downgrade() -> None:
    op.execute(otp_challenge.delete())
    with op.batch_alter_table('otp_challenge', schema=None) as batch_op:
        batch_op.drop_index('ix_otp_challenge_chat_created')
        batch_op.drop_index('ix_otp_challenge_mobile_created')
        batch_op.alter_column('chat_pseudonym', new_column_name='chat_key',
                              existing_type=sa.String(length=96), existing_nullable=False)
        batch_op.alter_column('mobile_pseudonym', new_column_name='mobile',
                              existing_type=sa.String(length=96),
                              type_=sa.String(length=20), existing_nullable=False)
    op.create_index('ix_otp_challenge_chat_created', 'otp_challenge', ['chat_key', 'created_at'], unique=False)
    op.create_index('ix_otp_challenge_mobile_created', 'otp_challenge', ['mobile', 'created_at'], unique=False)
