"""The benchmark's child processes, so that each measures one program with its own memory.

    python -m bench.worker serve PORT          the real web app under uvicorn until stdin closes
    python -m bench.worker import FILE CODE    one CSV import, timed

Settings come from the environment the benchmark sets (BOT_CONFIG, DATABASE_URL, SECRET_KEY).
On exit each prints one JSON line on stdout: the timing (for an import) and the peak RSS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

import uvicorn

from bot.app import Services, build_web_app
from bot.settings import load_settings


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


async def serve(port: int) -> dict:
    services = Services.build(load_settings())
    config = uvicorn.Config(
        build_web_app(services), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
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
    from bot.csv_import import import_csv

    services = Services.build(load_settings())
    try:
        async with services.database.session() as session:
            started = time.perf_counter()
            report = await import_csv(session, services, path, code)
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


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"] and len(argv) == 2:
        result = asyncio.run(serve(int(argv[1])))
    elif argv[:1] == ["import"] and len(argv) == 3:
        result = asyncio.run(import_file(Path(argv[1]), argv[2]))
    else:
        sys.exit(__doc__)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
