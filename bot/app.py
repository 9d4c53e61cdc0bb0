"""The composition root: settings, database, services and channels are built here, and only here.

`Services.build` wires the plain modules together; `run_all`, `serve_web`, `run_worker` and
`run_console` start what `python -m bot ...` asks for and stop it cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from bot.alerts import digest
from bot.alerts.channels import Sender
from bot.alerts.dispatcher import Dispatcher
from bot.intake.csv_import import ImportReport, import_csv
from bot.intake.demo import load_demo
from bot.platform import health
from bot.platform.background import Background
from bot.platform.db import Database
from bot.platform.i18n import Catalogues
from bot.platform.logs import RequestIds, format_every_handler, mask_every_handler
from bot.platform.settings import Settings, SettingsError
from bot.relatives import housekeeping
from bot.relatives.conversation import Conversation
from bot.relatives.otp import OtpService
from bot.staff import admin as staff_admin
from bot.staff.demo import add_demo_logins
from handlers.console import CHANNEL as CONSOLE
from handlers.console import ConsoleChat, ConsoleCodes, ConsoleSender, StdinLines, write_stdout
from handlers.hospital_api import HospitalApiServices, request_validation_response
from handlers.hospital_api import router as hospital_api_router
from handlers.metrics import CountRequests, DatabaseGauges, PrometheusMetrics, metrics_router
from handlers.staff import StaffServices
from handlers.staff import install as install_staff_pages
from handlers.telegram import CHANNEL as TELEGRAM
from handlers.telegram import TelegramChannel, TelegramSender, build_application
from handlers.twilio_api import TwilioClient, TwilioSmsCodes, TwilioVerifyCodes, twilio_client
from handlers.web import SafeHeaders, docs_router
from handlers.whatsapp import CHANNEL as WHATSAPP
from handlers.whatsapp import STATUS_PATH as WHATSAPP_STATUS_PATH
from handlers.whatsapp import WEBHOOK_PATH as WHATSAPP_WEBHOOK_PATH
from handlers.whatsapp import WhatsAppChannel, WhatsAppSender

log = logging.getLogger(__name__)

# On Ctrl-C or SIGTERM, how long requests in flight may take to finish: everything stops within 5 s.
GRACEFUL_SHUTDOWN_SECONDS = 3

HOW_TO_CONNECT = """\
No messaging channel is configured, so this is the local console chat on fictional demo data.
To connect Telegram: set TELEGRAM_BOT_TOKEN (from @BotFather). For WhatsApp: TWILIO_WHATSAPP_FROM,
TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL; alerts more than 24 hours after a
relative's last message need the approved templates in config.yaml (whatsapp_templates). Either
channel needs SMS for the codes: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_SMS_FROM. The
README explains each."""


def _configured(value: str | None, name: str) -> str:
    """A setting that `load_settings` requires in this configuration: it refuses to start without it."""
    if not value:
        raise SettingsError(f"{name} is required")
    return value


def utc_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """Everything the channels and the web server share. `clock` may be replaced (tests): every
    part reads it through this object."""

    settings: Settings
    database: Database
    secret_key: bytes
    clock: Callable[[], datetime] = utc_clock
    show: Callable[[str], None] = write_stdout  # where the console provider prints its "SMS"
    background: Background = field(default_factory=Background)
    twilio: TwilioClient | None = None
    catalogues: Catalogues = field(init=False)
    otp: OtpService = field(init=False)
    conversation: Conversation = field(init=False)
    # The channels alerts can go out on in this process (WhatsApp's when configured); build_telegram
    # adds Telegram's.
    senders: dict[str, Sender] = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    # What this process counts, in a registry of its own: /metrics of its web server.
    metrics: PrometheusMetrics = field(init=False)

    @classmethod
    def build(cls, settings: Settings, show: Callable[[str], None] = write_stdout) -> Services:
        services = cls(settings, Database(settings.database_url), settings.secret_key_or_local(), show=show)
        services._wire()
        return services

    def now(self) -> datetime:
        return self.clock()

    def _wire(self) -> None:
        config = self.settings.config
        self.catalogues = Catalogues(config.languages.available, config.languages.default)
        self.metrics = PrometheusMetrics(DatabaseGauges(self.database, config, self.now))
        self.otp = self._build_otp()
        self.conversation = Conversation(
            self.database, config, self.otp, self.catalogues, self.background, self.now, self.secret_key
        )
        self.senders = {CONSOLE: ConsoleSender(self.show)}
        if self.settings.env.twilio_whatsapp_from:  # no lifecycle of its own: the Twilio client's
            self.senders[WHATSAPP] = self._whatsapp_sender()
        self.dispatcher = Dispatcher(
            self.database, config, self.catalogues, self.senders, self.now, self.secret_key, self.metrics
        )
        self.database.outbox_listeners.append(self.dispatcher.wake)
        self.database.clock = self.now  # outbox rows are held back by the dispatcher's clock

    def _build_otp(self) -> OtpService:
        settings, policy = self.settings, self.settings.config.otp
        provider = settings.otp_provider
        if provider == "console":
            return OtpService(policy, self.secret_key, self.now, sender=ConsoleCodes(self.show, self.metrics))
        env = settings.env
        if provider == "twilio_verify":
            verifier = TwilioVerifyCodes(
                self.twilio_client(),
                _configured(env.twilio_verify_service_sid, "TWILIO_VERIFY_SERVICE_SID"),
                self.metrics,
            )
            return OtpService(policy, self.secret_key, self.now, verifier=verifier)
        sender = TwilioSmsCodes(
            self.twilio_client(), env.twilio_sms_from, env.twilio_messaging_service_sid, self.metrics
        )
        return OtpService(policy, self.secret_key, self.now, sender=sender)

    def _whatsapp_sender(self) -> WhatsAppSender:
        env, config = self.settings.env, self.settings.config
        return WhatsAppSender(
            self.twilio_client(), _configured(env.twilio_whatsapp_from, "TWILIO_WHATSAPP_FROM"),
            config.whatsapp_templates, config.pacing.whatsapp,
            f"{(env.public_base_url or '').rstrip('/')}{WHATSAPP_STATUS_PATH}", self.now, self.metrics,
        )  # fmt: skip

    def twilio_client(self) -> TwilioClient:
        """The one Twilio client of this process (codes and WhatsApp share its HTTP client)."""
        if self.twilio is None:
            secrets = self.settings.secrets
            self.twilio = twilio_client(
                _configured(secrets.twilio_account_sid, "TWILIO_ACCOUNT_SID"),
                _configured(secrets.twilio_auth_token, "TWILIO_AUTH_TOKEN"),
                self.settings.env.twilio_api_base_url,
            )
        return self.twilio

    async def load_demo(self, session: AsyncSession) -> list[str]:
        """The fictional demo hospitals and patients (`bot.intake.demo`), as of this clock, and the
        ward page's demo logins (`bot.staff.demo`)."""
        lines = await load_demo(session, self.settings, self.secret_key, self.now())
        page = f"http://{self.settings.host}:{self.settings.port}/staff/"
        return lines + await add_demo_logins(session, page)

    async def import_csv(
        self, session: AsyncSession, path: Path, hospital_code: str, dry_run: bool = False
    ) -> ImportReport:
        """A hospital's CSV file (`bot.intake.csv_import`), read with this region and clock."""
        return await import_csv(session, path, hospital_code, self.settings.config.phone_region, self.now(), dry_run)

    async def close(self) -> None:
        await self.background.drain()
        if self.twilio is not None:
            await self.twilio.http_client.close()
        await self.database.dispose()


def build_telegram(services: Services) -> TelegramChannel | None:
    """The Telegram bot, when a token is configured; its alerts go through the dispatcher."""
    settings = services.settings
    if not settings.secrets.telegram_bot_token:
        return None
    # python-telegram-bot 22 gives a 429's retry_after in whole seconds, with a deprecation warning
    # at each that its next major version gives a timedelta: this process takes the timedelta now.
    os.environ["PTB_TIMEDELTA"] = "true"
    application = build_application(settings, services.conversation, services.metrics)
    services.senders[TELEGRAM] = TelegramSender(application, settings)
    return TelegramChannel(
        application, services.catalogues, settings.env.telegram_webhook_url, settings.secrets.telegram_webhook_secret
    )


def build_whatsapp(services: Services) -> WhatsAppChannel | None:
    """Twilio's WhatsApp webhooks, when TWILIO_WHATSAPP_FROM is set (settings then require the
    Twilio account and PUBLIC_BASE_URL, and warn of missing alert templates)."""
    sender = services.senders.get(WHATSAPP)
    if not isinstance(sender, WhatsAppSender):
        return None
    settings = services.settings
    return WhatsAppChannel(
        services.conversation,
        sender,
        services.database,
        settings.config.notifications,
        services.now,
        settings.secrets.twilio_auth_token or "",
        settings.env.public_base_url or "",
        settings.env.twilio_whatsapp_from or "",
        services.metrics,
    )


class _WebApp(FastAPI):
    """FastAPI with `RequestIds` outside even its error handling, so that a 500 answer carries
    X-Request-ID too, and its traceback the request id."""

    def build_middleware_stack(self):
        return RequestIds(super().build_middleware_stack())


def build_web_app(services: Services, telegram: TelegramChannel | None = None) -> FastAPI:
    """The web server: the hospital API, the health check, and the Telegram and WhatsApp webhooks
    if used."""
    app = _WebApp(
        title="Ward Watch hospital API",
        description="Hospitals send admissions and condition updates; relatives are told.",
        version="1",
        # FastAPI's own pages load their scripts from CDNs: docs_router serves Swagger UI itself.
        docs_url=None,
        redoc_url=None,
    )
    # A route that takes larger bodies says so with its own max_body_size. Added before
    # SafeHeaders, which thus wraps it and gives its 413 the same headers as every answer.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=services.settings.config.server.max_body_bytes)
    app.add_middleware(SafeHeaders)
    # Added last, so it wraps the two above: it counts their 413s too, and a request that raised as its 500.
    app.add_middleware(CountRequests, metrics=services.metrics)
    app.add_exception_handler(RequestValidationError, request_validation_response)
    app.include_router(docs_router(app.openapi_url or "/openapi.json", app.title))
    app.state.hospital_api = HospitalApiServices(
        services.database, services.secret_key, services.settings.config.phone_region, services.now
    )
    app.include_router(hospital_api_router)
    install_staff_pages(
        app,
        StaffServices(
            services.database, services.secret_key, services.settings.config, services.catalogues,
            services.now, services.settings.env.public_base_url, services.metrics,
        ),
    )  # fmt: skip
    if telegram is not None and services.settings.env.telegram_webhook_url:
        app.include_router(telegram.webhook_router())
    whatsapp = build_whatsapp(services)
    if whatsapp is not None:
        app.include_router(whatsapp.webhook_router())
        log.info("WhatsApp webhook at %s", whatsapp.signed_url(WHATSAPP_WEBHOOK_PATH))

    app.include_router(operations_router(services))
    return app


def operations_router(services: Services) -> APIRouter:
    """What an operator's load balancer and Prometheus read, from the web and worker processes
    alike: `/healthz`, `/readyz`, and this process's `/metrics` (`handlers.metrics`)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz():
        """200 when the database answers, 503 otherwise."""
        if await services.database.ping():
            return {"status": "ok"}
        return JSONResponse({"status": "database unavailable"}, status_code=503)

    @router.get("/readyz", responses={503: {"description": "Not ready: `reasons` lists why, one line each"}})
    async def readyz():
        """200 when relatives are being answered and told; 503 with the reasons when the database
        does not answer, the dispatcher's heartbeat is stale, a due alert has waited longer than
        `operations.max_alert_delay_seconds`, or calls to Telegram or Twilio have failed for over a
        minute (as this process made them)."""
        reasons = await health.unready_reasons(services.database, services.settings.config, services.now())
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return {"status": "ready", "reasons": []}

    router.include_router(metrics_router(services.metrics, services.settings.secrets.metrics_token))
    return router


def build_worker_app(services: Services) -> FastAPI:
    """The worker process's own small web server (`operations.worker_metrics_port`): its
    `/metrics` count the alerts it sends, which the web process never sees."""
    app = _WebApp(title="Ward Watch worker", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SafeHeaders)
    app.include_router(operations_router(services))
    return app


def build_scheduler(services: Services) -> AsyncIOScheduler:
    """The periodic work of the `worker` process. Each job is registered here, in one place."""
    scheduler = AsyncIOScheduler(timezone=services.settings.time_zone)
    config = services.settings.config

    async def purge_code_requests() -> None:
        await housekeeping.purge_code_requests(services.database, config.otp, services.now())

    async def purge_inbound_messages() -> None:
        await housekeeping.purge_inbound_messages(services.database, services.now())

    async def end_lapsed_verifications() -> None:
        await housekeeping.end_lapsed_verifications(services.database, config.verification, services.now())

    async def delete_after_retention() -> None:
        await housekeeping.delete_after_retention(services.database, config.notifications, services.now())

    async def erase_patient_data() -> None:
        await housekeeping.erase_patient_data(services.database, config.retention, services.now())

    async def delete_old_uploads() -> None:
        await staff_admin.delete_old_uploads(services.database, services.now())

    async def daily_digest() -> None:
        await digest.enqueue_digests(services.database, config, services.now())

    for job in (
        purge_code_requests, purge_inbound_messages, end_lapsed_verifications, delete_after_retention,
        erase_patient_data, delete_old_uploads,
    ):  # fmt: skip
        scheduler.add_job(job, "interval", hours=1, id=job.__name__, coalesce=True)
    hour, minute = (int(part) for part in config.notifications.digest_at.split(":"))
    # In hospital time; a worker busy or down at that minute still sends it within the hour.
    scheduler.add_job(
        daily_digest, "cron", hour=hour, minute=minute, timezone=services.settings.time_zone,
        id="daily_digest", coalesce=True, misfire_grace_time=3600,
    )  # fmt: skip
    return scheduler


class CannotListen(Exception):
    """A web server could not listen where it was told to (its port is taken)."""


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: `_until_stopped` owns SIGINT and SIGTERM so that
    everything else shuts down cleanly too."""

    def __init__(self, config: uvicorn.Config, listening: asyncio.Event | None = None) -> None:
        super().__init__(config)
        self._listening = listening  # set once it listens

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def startup(self, sockets=None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn exits the process when it cannot listen, having logged why
            where = f"http://{self.config.host}:{self.config.port}"
            raise CannotListen(f"could not serve on {where} (the reason is logged above)") from None
        if self._listening is not None:
            self._listening.set()


async def _until_stopped(*tasks: asyncio.Task) -> None:
    """Wait for Ctrl-C, SIGTERM or the first task to end; then cancel the rest.

    The signal handlers stay until the event loop closes: a second Ctrl-C while everything shuts
    down would otherwise interrupt the shutdown with a KeyboardInterrupt traceback."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _pending = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = None if task is stopper or task.cancelled() else task.exception()
            if failure is not None:
                raise failure
    finally:
        for task in (stopper, *tasks):
            task.cancel()
        await asyncio.gather(stopper, *tasks, return_exceptions=True)


async def _serve(services: Services, telegram: TelegramChannel | None, quiet: bool = False) -> None:
    settings = services.settings
    app = build_web_app(services, telegram)
    await _serve_app(app, settings.host, settings.port, "hospital API (OpenAPI at /docs)", quiet)


async def _serve_worker_pages(services: Services, listening: asyncio.Event) -> None:
    """The worker's /metrics, /healthz and /readyz, at the web server's host."""
    port = services.settings.config.operations.worker_metrics_port
    await _serve_app(build_worker_app(services), services.settings.host, port, "worker's /metrics", True, listening)


async def _serve_app(
    app: FastAPI, host: str, port: int, what: str, quiet: bool = False, listening: asyncio.Event | None = None
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning" if quiet else "info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    # uvicorn.Config has just given uvicorn's loggers handlers of their own, outside the root's:
    # a failed request's traceback goes through them.
    mask_every_handler()
    format_every_handler()
    log.info("%s on http://%s:%s", what, host, port)
    server = _Server(config, listening)
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        # Cancelled mid-run, uvicorn would log its lifespan's CancelledError as an ERROR traceback
        # and drop the requests in flight: it is asked to finish them and shut down instead.
        server.should_exit = True
        await serving
        raise


async def _worker(services: Services) -> None:
    """The scheduler's periodic jobs and the dispatcher's loop, until cancelled."""
    # The scheduler must start inside the running loop.
    scheduler = build_scheduler(services)
    scheduler.start()
    try:
        await services.dispatcher.run()
    finally:
        scheduler.shutdown(wait=False)


async def _console(services: Services) -> None:
    chat = ConsoleChat(
        services.conversation, StdinLines().read_line, write_stdout, bold=sys.stdout.isatty(), metrics=services.metrics
    )
    await chat.run()


async def _load_demo_if_local(services: Services) -> None:
    """Locally, the console chat has fictional patients to ask about; never on a real database."""
    if not services.settings.is_local:
        return
    async with services.database.session() as session:
        for line in await services.load_demo(session):
            write_stdout(line)


async def run_all(services: Services) -> None:
    """`python -m bot run`: everything configured, in one process, as on a single machine.
    With no messaging channel and a terminal, the local console chat runs beside the API."""
    telegram = build_telegram(services)
    console = not services.settings.channels_configured and sys.stdin.isatty()
    try:
        if telegram is not None:
            await telegram.start()
        tasks = [asyncio.create_task(_serve(services, telegram, quiet=console)), asyncio.create_task(_worker(services))]
        if console:
            await _load_demo_if_local(services)
            write_stdout(HOW_TO_CONNECT)
            tasks.append(asyncio.create_task(_console(services)))
        elif not services.settings.channels_configured:
            log.info("no messaging channel configured: only the hospital API runs")
        await _until_stopped(*tasks)
    finally:
        if telegram is not None:
            await telegram.stop()
        await services.close()


async def serve_web(services: Services) -> None:
    """`python -m bot web`: the web server alone (the Procfile's web process)."""
    telegram = build_telegram(services)
    try:
        if telegram is not None:
            await telegram.start()
        await _until_stopped(asyncio.create_task(_serve(services, telegram)))
    finally:
        if telegram is not None:
            await telegram.stop()
        await services.close()


async def run_worker(services: Services) -> None:
    """`python -m bot worker`: the scheduler and the dispatcher alone (the Procfile's worker
    process), with its /metrics, /healthz and /readyz on `operations.worker_metrics_port`. Telegram
    is only initialised to send alerts; the web process receives updates."""
    telegram = build_telegram(services)
    try:
        if telegram is not None:
            await telegram.application.initialize()
        # The pages listen before the dispatcher starts: a taken port stops the worker before it
        # has begun any work that stopping would cut short (a transaction rolled back mid-way).
        listening = asyncio.Event()
        pages = asyncio.create_task(_serve_worker_pages(services, listening))
        waiting = asyncio.create_task(listening.wait())
        await asyncio.wait([pages, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if pages.done():
            pages.result()
        await _until_stopped(asyncio.create_task(_worker(services)), pages)
    finally:
        if telegram is not None:
            await telegram.application.shutdown()
        await services.close()


async def run_console(services: Services) -> None:
    """`python -m bot chat`: the relative's conversation in this terminal, on demo data locally."""
    try:
        await _load_demo_if_local(services)
        await _until_stopped(asyncio.create_task(_console(services)), asyncio.create_task(services.dispatcher.run()))
    finally:
        await services.close()
