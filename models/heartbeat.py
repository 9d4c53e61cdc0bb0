"""When a long-running loop last showed it was alive, kept where every process can read it: the
worker's dispatcher writes its beat here and the web process's `/readyz` reads it."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class Heartbeat(SQLModel, table=True):
    __tablename__ = "heartbeat"

    name: str = Field(primary_key=True, max_length=40, description="the loop: dispatcher")
    beat_at: datetime
