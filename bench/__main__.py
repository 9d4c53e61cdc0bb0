"""Benchmarks of ingestion (records stored per second), dispatch (alerts sent per second) and
replies (how soon relatives are answered).

Dispatch: alerts sent per second at Telegram's pace, the dispatcher's CPU per alert with limits
lifted, change-to-send latency, memory; see bench/dispatch.py.
Replies: reply latency at 20, 60 and 120 incoming messages a second, ours beside a minimal
ConversationHandler bot, two web processes, a surge of /status; see bench/replies.py.

    make bench        (or: .venv/bin/python -m bench [--only ingest|dispatch|replies] [--no-postgresql]
                       [--admissions N] [--rows N] [--concurrency N])

Ingestion: two ways in, each on SQLite (a temporary file) and on PostgreSQL (a fresh database):
  HTTP API    the real web app under uvicorn in a child process on a loopback port, driven by
              httpx with some concurrency: one PUT admission + one POST update per patient.
  CSV import  `bot.intake.csv_import.import_csv` on a generated file, each row a new admission with a
              condition, in a child process; the time is that of the import call alone.
Each run gets a new database migrated with `bot.platform.db.upgrade`, so runs do not see each other.

PostgreSQL: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres) names a
server and a user allowed to CREATE DATABASE; the benchmark creates `wardwatch_bench` there and
drops it afterwards (the dispatch benchmark: `wardwatch_bench_dispatch` and a copy of it). If the
server does not answer, the PostgreSQL rows are skipped with a note.

The target: 10,000 CSV rows in under 5 s on SQLite (the PASS/MISS column). Peak RSS is that of
the child process doing the work (the web server, or the importer).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import select

from bench import dispatch, replies
from bench.common import (
    PROJECT_ROOT,
    SECRET_KEY,
    child_env,
    log_tail,
    postgresql_database,
    postgresql_unreachable,
    print_rows,
    progress,
    server_url,
    sqlite_database,
)
from bot.intake.hospitals import add_hospital
from bot.platform import db
from bot.platform.settings import load_settings
from models import Admission, ConditionUpdate

HOSPITAL = "BENCH"
BENCH_DATABASE = "wardwatch_bench"
TARGET_ROWS, TARGET_SECONDS = 10_000, 5.0

CONDITIONS = ("stable", "moderate", "critical")
CARE_AREAS = ("ward", "hdu", "icu", "ccu")
SUPPORTS = ("none", "oxygen", "hfnc", "niv", "ventilator")


@dataclass
class Result:
    path: str
    database: str
    work: str  # what was sent: "2,000 PUT + 2,000 POST", "10,000 rows"
    records: int  # admissions + condition updates stored
    seconds: float
    peak_rss_kb: int
    p95_ms: float | None = None
    target: str = ""
    problems: str = ""


# --- databases -----------------------------------------------------------------------------------


async def prepare(url: str) -> str:
    """Migrate an empty database, register the bench hospital, return its API key."""
    await db.upgrade_async(url)
    settings = load_settings(child_env(url))
    database = db.Database(url)
    try:
        async with database.session() as session:
            issued = await add_hospital(
                session, settings, SECRET_KEY.encode(), HOSPITAL, "Benchmark Hospital", "033 2400 1000"
            )
            await session.commit()
    finally:
        await database.dispose()
    return issued.api_key


async def stored_records(url: str) -> int:
    database = db.Database(url)
    try:
        async with database.session() as session:
            admissions = (await session.exec(select(func.count()).select_from(Admission))).one()
            updates = (await session.exec(select(func.count()).select_from(ConditionUpdate))).one()
    finally:
        await database.dispose()
    return admissions + updates


# --- child processes ---------------------------------------------------------------------------


async def start_child(url: str, log: Path, *args: str) -> asyncio.subprocess.Process:
    # stderr goes to a file: a pipe nobody reads would stall a chatty child.
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.worker", *args,
            cwd=PROJECT_ROOT, env=child_env(url), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip


async def child_result(process: asyncio.subprocess.Process, log: Path) -> dict:
    stdout = await process.stdout.read()
    await process.wait()
    lines = stdout.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"bench.worker exited with {process.returncode}:\n{log_tail(log)}")
    return json.loads(lines[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- HTTP API ----------------------------------------------------------------------------------


def mobile(i: int) -> str:
    """A fictional but valid Indian mobile: +91 90000 NNNNN."""
    return f"+91 90000 {i % 100_000:05d}"


async def wait_until_up(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError("the web server exited at start")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the web server did not answer /healthz within 30 s")


async def drive_api(client: httpx.AsyncClient, admissions: int, concurrency: int):
    """Each patient: PUT the admission, then POST a condition update. Returns (seconds, latencies, problems)."""
    latencies: list[float] = []
    problems: list[str] = []
    admitted_at = (datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(hours=2)).replace(tzinfo=None)
    indices = iter(range(admissions))

    async def send(method: str, path: str, body: dict, expected: int) -> None:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, json=body)
        except httpx.TransportError as error:  # reported with the others, not the end of the run
            problems.append(f"{method} {path}: {type(error).__name__} {error}".rstrip())
            return
        latencies.append(time.perf_counter() - started)
        if response.status_code != expected:
            problems.append(f"{method} {path}: {response.status_code} {response.text[:200]}")

    async def worker() -> None:
        for i in indices:  # one iterator shared by all workers
            path = f"/api/v1/admissions/B{i:06d}"
            admission = {
                "patient_name": f"Bench Patient {i}", "contact_mobile": mobile(i), "age": 20 + i % 70,
                "sex": "MF"[i % 2], "ward": f"Ward {i % 12 + 1}", "bed": str(i % 40 + 1),
                "admitted_at": admitted_at.isoformat(timespec="minutes"),
            }  # fmt: skip
            update = {
                "condition": CONDITIONS[i % 3], "care_area": CARE_AREAS[i % 4],
                "respiratory_support": SUPPORTS[i % 5], "spo2": 85 + i % 15, "pulse": 60 + i % 60,
            }  # fmt: skip
            await send("PUT", path, admission, 201)
            await send("POST", path + "/updates", update, 201)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, problems


async def bench_api(database: str, url: str, admissions: int, concurrency: int, logs: Path) -> Result:
    key = await prepare(url)
    port = free_port()
    log = logs / f"serve-{database}.log"
    process = await start_child(url, log, "serve", str(port))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
            limits=limits, timeout=60,
        ) as client:  # fmt: skip
            await wait_until_up(client, process)
            seconds, latencies, problems = await drive_api(client, admissions, concurrency)
    finally:
        process.stdin.close()  # the server's signal to stop
    server = await child_result(process, log)
    tail = log_tail(log, 5) if problems else ""
    latencies.sort()
    records = await stored_records(url)
    if records != 2 * admissions and not problems:
        problems.append(f"{records:,} records stored, expected {2 * admissions:,}")
    return Result(
        path="HTTP API",
        database=database,
        work=f"{admissions:,} PUT + {admissions:,} POST, {concurrency} at a time",
        records=records,
        seconds=seconds,
        peak_rss_kb=server["peak_rss_kb"],
        p95_ms=latencies[int(len(latencies) * 0.95)] * 1000 if latencies else None,
        problems=(
            f"{len(problems)} problems, first: {problems[0]}" + (f"; the server's log ends: {tail}" if tail else "")
        )
        if problems
        else "",
    )


# --- CSV import --------------------------------------------------------------------------------


def write_csv(path: Path, rows: int) -> None:
    """`rows` new admissions, each with a condition, times in hospital time without an offset."""
    recorded = (datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(hours=1)).replace(tzinfo=None)
    admitted = recorded - timedelta(days=1)
    with path.open("w", newline="", encoding="utf-8") as file:
        out = csv.writer(file)
        out.writerow([
            "registration_no", "patient_name", "contact_mobile", "age", "sex", "ward", "bed",
            "admitted_at", "condition", "care_area", "respiratory_support", "spo2", "pulse",
            "bp_systolic", "bp_diastolic", "recorded_at",
        ])  # fmt: skip
        for i in range(rows):
            out.writerow([
                f"C{i:06d}", f"Bench Patient {i}", mobile(i), 20 + i % 70, "MF"[i % 2],
                f"Ward {i % 12 + 1}", i % 40 + 1, admitted.isoformat(timespec="minutes"),
                CONDITIONS[i % 3], CARE_AREAS[i % 4], SUPPORTS[i % 5], 85 + i % 15, 60 + i % 60,
                110 + i % 40, 70 + i % 20, recorded.isoformat(timespec="minutes"),
            ])  # fmt: skip


async def bench_csv(database: str, url: str, csv_path: Path, rows: int, logs: Path) -> Result:
    await prepare(url)
    log = logs / f"import-{database}.log"
    imported = await child_result(await start_child(url, log, "import", str(csv_path), HOSPITAL), log)
    seconds = imported["seconds"]
    target = ""
    if database == "SQLite" and rows < TARGET_ROWS:
        target = f"n/a (the target is for {TARGET_ROWS:,} rows)"
    elif database == "SQLite":
        per_target = seconds * TARGET_ROWS / rows
        verdict = "PASS" if per_target < TARGET_SECONDS else "MISS"
        target = f"{verdict} ({per_target:.2f} s per {TARGET_ROWS:,} rows, target < {TARGET_SECONDS:g} s)"
    records = await stored_records(url)
    problems = "" if imported["ok"] and records == 2 * rows else f"report: {imported['summary']}"
    if imported["problems"]:
        problems += f"; first: {imported['problems'][0]}"
    return Result(
        path="CSV import", database=database, work=f"{rows:,} rows", records=records,
        seconds=seconds, peak_rss_kb=imported["peak_rss_kb"], target=target, problems=problems,
    )  # fmt: skip


# --- the run -----------------------------------------------------------------------------------


def print_table(results: list[Result], notes: list[str]) -> None:
    header = ("path", "database", "sent", "records", "seconds", "records/s", "p95 ms", "peak RSS", "target")
    print_rows(
        header,
        [
            (
                r.path,
                r.database,
                r.work,
                f"{r.records:,}",
                f"{r.seconds:.2f}",
                f"{r.records / r.seconds:,.0f}",
                f"{r.p95_ms:.1f}" if r.p95_ms is not None else "-",
                f"{r.peak_rss_kb / 1024:.0f} MB",
                r.target or "-",
            )  # fmt: skip
            for r in results
        ],
    )
    for r in results:
        if r.problems:
            notes.append(f"{r.path} on {r.database}: {r.problems}")
    for note in notes:
        print(f"note: {note}")


async def backends_to_run(args: argparse.Namespace, notes: list[str]) -> list[str]:
    backends = ["SQLite"]
    server = server_url()
    if args.no_postgresql:
        notes.append("PostgreSQL skipped (--no-postgresql)")
    elif reason := await postgresql_unreachable(server):
        notes.append(f"PostgreSQL skipped: {make_url(server)!r} unreachable ({reason})")
    else:
        backends.append("PostgreSQL")
    return backends


def load_note() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average at start {load} (client and server share them)"


async def run(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    notes: list[str] = [load_note()]
    backends = await backends_to_run(args, notes)
    server = server_url()

    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-") as folder:
        folder = Path(folder)
        csv_path = folder / "admissions.csv"
        write_csv(csv_path, args.rows)
        for backend in backends:
            for name, scenario in (
                (
                    "api",
                    lambda url, backend=backend: bench_api(backend, url, args.admissions, args.concurrency, folder),
                ),
                ("csv", lambda url, backend=backend: bench_csv(backend, url, csv_path, args.rows, folder)),
            ):
                progress(f"{backend} {name}")
                database = (
                    sqlite_database(folder, name)
                    if backend == "SQLite"
                    else postgresql_database(server, BENCH_DATABASE)
                )
                try:
                    async with database as url:
                        results.append(await scenario(url))
                except Exception as exc:  # noqa: BLE001 - report and go on with the next one
                    notes.append(f"{backend} {name} failed: {type(exc).__name__}: {exc}")
    print_table(results, notes)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("ingest", "dispatch", "replies"), help="run one of the three benchmarks")
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    ingest = parser.add_argument_group("ingestion")
    ingest.add_argument("--admissions", type=int, default=2_000, help="patients sent through the API")
    ingest.add_argument("--concurrency", type=int, default=16, help="API requests in flight")
    ingest.add_argument("--rows", type=int, default=10_000, help="rows in the CSV file")
    dispatch.add_arguments(parser.add_argument_group("dispatch"))
    replies.add_arguments(parser.add_argument_group("replies"))
    args = parser.parse_args()
    failed = False
    if args.only in (None, "ingest"):
        results = asyncio.run(run(args))
        failed |= any(r.target.startswith("MISS") or r.problems for r in results) or not results
    if args.only in (None, "dispatch"):
        if args.only is None:
            print()
        failed |= not asyncio.run(dispatch.run(args, backends_to_run, load_note()))
    if args.only in (None, "replies"):
        if args.only is None:
            print()
        failed |= not asyncio.run(replies.run(args, backends_to_run, load_note()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
