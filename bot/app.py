"""The composition root: settings, database, services and the web server are built here only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bot.db import Database
from bot.settings import Settings
from handlers.hospital_api import hospital_api, request_validation_response

log = logging.getLogger(__name__)


def utc_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Services:
    settings: Settings
    database: Database
    secret_key: bytes
    clock: Callable[[], datetime] = field(default=utc_clock)

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        return cls(settings, Database(settings.database_url), settings.secret_key_or_local())


def build_web_app(services: Services) -> FastAPI:
    """The web server's application: the hospital API and the health check."""
    app = FastAPI(
        title="Ward Watch hospital API",
        description="Hospitals send admissions and condition updates; relatives are told.",
        version="1",
    )
    app.add_exception_handler(RequestValidationError, request_validation_response)
    app.include_router(
        hospital_api(
            services.database, services.secret_key, services.settings.config.phone_region, services.clock
        )
    )

    @app.get("/healthz", tags=["operations"])
    async def healthz():
        """200 when the database answers, 503 otherwise."""
        if await services.database.ping():
            return {"status": "ok"}
        return JSONResponse({"status": "database unavailable"}, status_code=503)

    return app


def build_scheduler(services: Services) -> AsyncIOScheduler:
    """The periodic work of the `worker` process. Each job is registered here, in one place."""
    return AsyncIOScheduler(timezone=services.settings.time_zone)


async def serve_web(services: Services) -> None:
    settings = services.settings
    config = uvicorn.Config(
        build_web_app(services), host=settings.host, port=settings.port, log_level="info"
    )
    log.info("hospital API on http://%s:%s (OpenAPI at /docs)", settings.host, settings.port)
    await uvicorn.Server(config).serve()


async def run_worker(services: Services) -> None:
    # The scheduler must start inside the running loop; it then runs until the task is cancelled.
    scheduler = build_scheduler(services)
    scheduler.start()
    try:
        await asyncio.Event().wait()
    finally:
        scheduler.shutdown(wait=False)


async def run_all(services: Services) -> None:
    """`python -m bot run`: everything configured, in one process, as on a single machine."""
    worker = asyncio.create_task(run_worker(services))
    try:
        await serve_web(services)
    finally:
        worker.cancel()
        await services.database.dispose()
