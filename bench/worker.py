"""The benchmark's child processes, so that each measures one program with its own memory.

    python -m bench.worker serve PORT          the real web app under uvicorn until stdin closes
    python -m bench.worker import FILE CODE    one CSV import, timed
    python -m bench.worker dispatch            the dispatcher with the Telegram sender, as the
                                               `worker` process runs them, until stdin closes

Settings come from the environment the benchmark sets (BOT_CONFIG, DATABASE_URL, SECRET_KEY, and
for `dispatch` TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL and the Twilio SMS settings a bot requires).
On exit each prints one JSON line on stdout: the timing (for an import) and the peak RSS.
`dispatch` also answers one JSON line per JSON line read on stdin (see `dispatch`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import resource
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn

from bot.app import Services, build_telegram, build_web_app
from bot.intake import rules
from bot.intake.hospitals import get_hospital
from bot.intake.schemas import ConditionUpdateIn, IntakeContext
from bot.platform.logs import configure_logging
from bot.platform.settings import load_settings


def peak_rss_kb() -> int:
    """This program's peak RSS in kB. Not ru_maxrss: Linux carries it over exec from the process
    that forked this one, so a child of a big benchmark process would show the benchmark's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


async def serve(port: int) -> dict:
    services = Services.build(load_settings())
    config = uvicorn.Config(build_web_app(services), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def stop_when_stdin_closes() -> None:
        # Not SIGTERM: uvicorn re-raises a caught signal after shutting down, which would kill
        # this process before it reports.
        await asyncio.to_thread(sys.stdin.read)
        server.should_exit = True

    stopper = asyncio.create_task(stop_when_stdin_closes())
    try:
        await server.serve()
    finally:
        stopper.cancel()
        await services.database.dispose()
    return {"peak_rss_kb": peak_rss_kb()}


async def import_file(path: Path, code: str) -> dict:

    services = Services.build(load_settings())
    try:
        async with services.database.session() as session:
            started = time.perf_counter()
            report = await services.import_csv(session, path, code)
            seconds = time.perf_counter() - started
    finally:
        await services.database.dispose()
    counts = {}
    if dataclasses.is_dataclass(report):
        counts = {k: v for k, v in dataclasses.asdict(report).items() if isinstance(v, int)}
    return {
        "seconds": seconds,
        "ok": bool(getattr(report, "ok", True)),
        "summary": report.summary() if hasattr(report, "summary") else str(report),
        "counts": counts,
        "problems": [str(p) for p in list(getattr(report, "problems", []))[:5]],
        "peak_rss_kb": peak_rss_kb(),
    }


def usage() -> dict:
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_seconds": cpu.ru_utime + cpu.ru_stime, "peak_rss_kb": peak_rss_kb(), "at": time.monotonic()}


async def record_update(services: Services, hospital_code: str, registration_no: str, update: dict) -> dict:
    """One condition update, exactly as `POST /api/v1/admissions/{registration_no}/updates` records
    it; its commit wakes this process's dispatcher, as in `python -m bot run`."""
    async with services.database.session() as session:
        hospital = await get_hospital(session, hospital_code)
        context = IntakeContext(
            region=services.settings.config.phone_region, tz=ZoneInfo(hospital.time_zone), now=services.now()
        )
        data = ConditionUpdateIn(**update).resolve(context)
        applied = await rules.commit_one(session, hospital, registration_no, data, f"api:{hospital.code}", "api")
        committed = time.monotonic()  # CLOCK_MONOTONIC: the benchmark's clock too
    return {"committed": committed, "outcome": applied.outcome.value}


async def dispatch() -> dict:
    """The dispatcher and the Telegram sender of `python -m bot worker` (logging as it logs),
    until stdin closes. Each stdin line is a JSON request, answered by one JSON line:
      {"usage": true}                                      CPU seconds and peak RSS so far
      {"update": {...}, "hospital": CODE, "registration_no": NO}   records a condition update
                                                           and answers its commit time"""
    configure_logging(logging.INFO)
    services = Services.build(load_settings())
    telegram = build_telegram(services)
    assert telegram is not None, "TELEGRAM_BOT_TOKEN is not set"
    await telegram.application.initialize()  # getMe, as `python -m bot worker` does
    runner = asyncio.create_task(services.dispatcher.run())
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"ready": usage()}), flush=True)
    try:
        while line := await stdin.readline():
            request = json.loads(line)
            if "update" in request:
                answer = await record_update(
                    services, request["hospital"], request["registration_no"], request["update"]
                )
            else:
                answer = usage()
            print(json.dumps(answer), flush=True)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await telegram.application.shutdown()
        await services.close()
    return usage()


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"] and len(argv) == 2:
        result = asyncio.run(serve(int(argv[1])))
    elif argv[:1] == ["import"] and len(argv) == 3:
        result = asyncio.run(import_file(Path(argv[1]), argv[2]))
    elif argv == ["dispatch"]:
        result = asyncio.run(dispatch())
    else:
        sys.exit(__doc__)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
