"""`/metrics`: this process's counts in Prometheus' text format, for the operator's Prometheus.

Each process has its own registry (`PrometheusMetrics`, built by the composition root): the web
process counts the messages it answers and the requests it serves, the worker the alerts it
sends; each is scraped on its own port. What lives in the database (the outbox, the dispatcher's
heartbeat, readiness) is read when scraped (`DatabaseGauges`), in a few small queries, so every
process reports the same values for it.

Who may read it: with `METRICS_TOKEN` set, whoever sends it as a bearer token (401 otherwise);
without it, only a client on this machine's loopback that no proxy stands in front of (403
otherwise): a request a proxy forwarded carries `X-Forwarded-For` or `Forwarded`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.platform import health
from bot.platform.db import Database
from bot.platform.metrics import Metrics
from bot.platform.settings import FileConfig
from models.chat import Notification
from models.enums import NotificationStatus

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"  # the route of a request no route answers: its path could be anything
# Methods a client may send are any word: others are counted as one, so that no client can add series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
# A reply is handed to the platform within a second or two; an API call in tens of milliseconds.
REPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PROXY_HEADERS = ("x-forwarded-for", "forwarded")


class DatabaseGauges(Collector):
    """The gauges read from the database when scraped: outbox rows by state, how long the oldest
    due alert has waited, the age of the dispatcher's heartbeat, and readiness as `/readyz`
    decides it. While the database does not answer, only `wardwatch_ready` (0) is reported."""

    def __init__(self, database: Database, config: FileConfig, clock: Callable[[], datetime]) -> None:
        self._database = database
        self._config = config
        self._clock = clock
        self._families: list[Metric] = []

    async def read(self) -> None:
        """Read the values the next `collect` reports."""
        now = self._clock()
        reasons = await health.unready_reasons(self._database, self._config, now)
        ready = GaugeMetricFamily("wardwatch_ready", "1 when /readyz answers 200, else 0")
        ready.add_metric([], 0 if reasons else 1)
        try:
            families = await self._outbox_and_heartbeat(now)
        except (SQLAlchemyError, OSError) as error:
            log.warning("metrics: the database did not answer (%s)", type(error).__name__)
            families = []
        self._families = [ready, *families]

    async def _outbox_and_heartbeat(self, now: datetime) -> list[Metric]:
        async with self._database.session() as session:
            counts = dict(
                (
                    await session.exec(
                        select(col(Notification.status), func.count()).group_by(col(Notification.status))
                    )
                ).all()
            )
            due_since = await health.oldest_due_since(session, now, self._config.notifications.grace_seconds)
            beat_at = await health.last_beat(session, health.DISPATCHER)
        rows = GaugeMetricFamily("wardwatch_outbox_rows", "Outbox rows (alerts) by state", labels=["state"])
        for state in NotificationStatus:
            rows.add_metric([state.value], counts.get(state, 0))
        oldest = GaugeMetricFamily(
            "wardwatch_outbox_oldest_due_seconds", "How long the oldest due alert has waited; 0 when none"
        )
        oldest.add_metric([], 0.0 if due_since is None else max(0.0, (now - due_since).total_seconds()))
        heartbeat = GaugeMetricFamily(
            "wardwatch_dispatcher_heartbeat_age_seconds",
            "Seconds since a dispatcher last wrote its heartbeat; +Inf when none ever has",
        )
        heartbeat.add_metric([], float("inf") if beat_at is None else (now - beat_at).total_seconds())
        return [rows, oldest, heartbeat]

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class PrometheusMetrics(Metrics):
    """The `Metrics` of one process, in a registry of its own."""

    def __init__(self, gauges: DatabaseGauges) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.gauges = gauges
        registry.register(gauges)
        self._received = Counter(
            "wardwatch_messages_received", "Messages from relatives", ["channel"], registry=registry
        )
        self._replies = Counter(
            "wardwatch_replies_sent", "Replies handed to the platform", ["channel"], registry=registry
        )
        self._reply_seconds = Histogram(
            "wardwatch_reply_seconds", "From a relative's message arriving to its replies handed to the platform",
            ["channel"], buckets=REPLY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._alerts = Counter(
            "wardwatch_alerts", "Alerts by what became of them in a dispatcher's pass",
            ["channel", "kind", "outcome"], registry=registry,
        )  # fmt: skip
        self._rate_limited = Counter(
            "wardwatch_rate_limited", "429 answers from Telegram or Twilio", ["channel"], registry=registry
        )
        self._retries = Counter(
            "wardwatch_send_retries", "Alerts put back to be tried again after a failed send",
            ["channel"], registry=registry,
        )  # fmt: skip
        self._codes = Counter(
            "wardwatch_codes", "One-time codes handed to their provider, or not", ["provider", "outcome"],
            registry=registry,
        )  # fmt: skip
        self._requests = Counter(
            "wardwatch_api_requests", "Web requests by route template, method and status",
            ["route", "method", "status"], registry=registry,
        )  # fmt: skip
        self._request_seconds = Histogram(
            "wardwatch_api_request_seconds", "Time to answer a web request", ["route", "method"],
            buckets=REQUEST_BUCKETS, registry=registry,
        )  # fmt: skip
        self._logins = Counter("wardwatch_staff_logins", "Logins on the ward's page", ["outcome"], registry=registry)

    def message_received(self, channel: str) -> None:
        self._received.labels(channel).inc()

    def replies_sent(self, channel: str, replies: int, seconds: float) -> None:
        self._replies.labels(channel).inc(replies)
        self._reply_seconds.labels(channel).observe(seconds)

    def alert(self, channel: str, kind: str, outcome: str) -> None:
        self._alerts.labels(channel, kind, outcome).inc()

    def rate_limited(self, channel: str) -> None:
        self._rate_limited.labels(channel).inc()

    def send_retry(self, channel: str) -> None:
        self._retries.labels(channel).inc()

    def code(self, provider: str, outcome: str) -> None:
        self._codes.labels(provider, outcome).inc()

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._request_seconds.labels(route, method).observe(seconds)

    def staff_login(self, outcome: str) -> None:
        self._logins.labels(outcome).inc()

    async def exposition(self) -> bytes:
        """Everything this process counts, with the database's gauges read now."""
        await self.gauges.read()
        return generate_latest(self.registry)


class CountRequests:
    """Counts every request the web app answers by its route's path template (the concrete
    path carries registration numbers), its method and status, and times it. A request that
    raised is counted as the 500 it becomes."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router notes the route it matched in the request's scope; its path_format is the
            # template without converters ("/api/v1/admissions/{registration_no}").
            route = getattr(scope.get("route"), "path_format", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
            self.metrics.api_request(route, method, status, time.perf_counter() - started)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(request: Request, token: str | None) -> Response | None:
    """Why this request may not read the metrics, as the answer to give; None when it may."""
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
    proxied = any(name in request.headers for name in _PROXY_HEADERS)
    if proxied or not _is_loopback(request.client.host if request.client else None):
        return Response("METRICS_TOKEN is not set: only this machine may read /metrics\n", status_code=403)
    return None


def metrics_router(metrics: PrometheusMetrics, token: str | None) -> APIRouter:
    """`GET /metrics`, for a bearer of `token`, or from loopback while it is unset."""
    router = APIRouter(include_in_schema=False)

    @router.get(METRICS_PATH)
    async def prometheus_metrics(request: Request) -> Response:
        refused = refusal(request, token)
        if refused is not None:
            return refused
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
