"""The deployment files of deploy/ and docs/DEPLOY.md, checked by the tools that will read them on
the server where those tools are installed here (systemd-analyze, promtool, caddy, nginx; each test
says why it skips otherwise), and against the application itself: the commands the units run, the
variables the service reads, the metrics it exports and the ports it listens on."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.cli import _parser
from bot.platform.settings import load_settings
from tests.support import PROJECT_ROOT, config_with_templates, free_port

DEPLOY = PROJECT_ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
RULES = DEPLOY / "prometheus" / "wardwatch-rules.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
NGINX_SITE = DEPLOY / "nginx" / "wardwatch.conf"
ENV_EXAMPLE = DEPLOY / "wardwatch.env.example"
GUIDE = PROJECT_ROOT / "docs" / "DEPLOY.md"
# Where the units expect the checkout (docs/DEPLOY.md: getting the code).
INSTALLED_AT = "/srv/ward-watch"
# The units as an operator enables them: the instances name a port or a schedule.
UNITS_TO_VERIFY = (
    "wardwatch.target",
    "wardwatch-migrate.service",
    "wardwatch-web@8081.service",
    "wardwatch-web@8082.service",
    "wardwatch-worker.service",
    "wardwatch-backup@hourly.service",
    "wardwatch-backup@hourly.timer",
    "wardwatch-backup@daily.service",
    "wardwatch-backup@daily.timer",
)
# The drop-ins of deploy/systemd and the units they go with (docs/DEPLOY.md).
SQLITE_DROP_IN = ("single-process-on-sqlite.conf", "wardwatch-web@8081.service.d")
PG_DUMP_DROP_IN = ("backup-with-pg_dump.conf", "wardwatch-backup@.service.d")


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed here (Debian: apt-get install {name})")
    return path


def _run(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False)


def _rendered(unit: Path) -> str:
    """A unit as it would be on the server, with this checkout and its Python in place of
    /srv/ward-watch: systemd-analyze checks that each ExecStart= program exists."""
    text = unit.read_text(encoding="utf-8")
    return text.replace(f"{INSTALLED_AT}/.venv/bin/python", sys.executable).replace(INSTALLED_AT, str(PROJECT_ROOT))


def _verify(into: Path, *drop_ins: tuple[str, str]) -> subprocess.CompletedProcess:
    analyze = _tool("systemd-analyze")
    for unit in SYSTEMD.glob("wardwatch*"):
        (into / unit.name).write_text(_rendered(unit), encoding="utf-8")
    for name, directory in drop_ins:
        (into / directory).mkdir()
        (into / directory / name).write_text(_rendered(SYSTEMD / name), encoding="utf-8")
    # The trailing colon keeps systemd's own directories after ours (network-online.target...).
    environment = {**os.environ, "SYSTEMD_UNIT_PATH": f"{into}:"}
    return _run(analyze, "verify", "--man=no", *UNITS_TO_VERIFY, env=environment)


def test_systemd_analyze_verifies_the_units_without_a_warning(tmp_path):
    verified = _verify(tmp_path, SQLITE_DROP_IN)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


def test_systemd_analyze_verifies_the_pg_dump_backup(tmp_path):
    if not Path("/usr/bin/pg_dump").exists():
        pytest.skip("pg_dump is not installed here (Debian: apt-get install postgresql-client)")
    verified = _verify(tmp_path, PG_DUMP_DROP_IN)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


def _exec_starts() -> dict[str, str]:
    """The command of each unit and drop-in (a drop-in's second ExecStart= replaces the unit's)."""
    starts = {}
    for unit in SYSTEMD.iterdir():
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                starts[unit.name] = line.removeprefix("ExecStart=")
    return starts


def test_every_unit_runs_a_command_that_python_m_bot_has():
    starts = _exec_starts()
    assert set(starts) == {
        "wardwatch-migrate.service",
        "wardwatch-web@.service",
        "wardwatch-worker.service",
        "wardwatch-backup@.service",
        "single-process-on-sqlite.conf",
        "backup-with-pg_dump.conf",
    }
    del starts["backup-with-pg_dump.conf"]  # pg_dump's own, checked by systemd-analyze above
    for unit, command in starts.items():
        words = shlex.split(command.replace("$$", "$"))
        if words[:2] == ["/bin/sh", "-c"]:  # the backup's file name is made by the shell
            words = shlex.split(words[2].split("exec ", 1)[1])
        after = words[words.index("bot") + 1 :]
        assert words[words.index("bot") - 2 :][:2] == [f"{INSTALLED_AT}/.venv/bin/python", "-m"], unit
        parsed = _parser().parse_args(after)
        assert parsed.command in {"db", "web", "worker", "backup", "run"}, unit


def test_web_processes_listen_on_their_instance_port_on_loopback():
    start = _exec_starts()["wardwatch-web@.service"]
    assert "HOST=127.0.0.1 PORT=%i " in start
    assert "HOST=127.0.0.1 " in _exec_starts()["wardwatch-worker.service"]


def _caddy_upstreams() -> list[str]:
    line = next(line for line in CADDYFILE.read_text().splitlines() if line.strip().startswith("reverse_proxy"))
    return [word for word in line.split() if re.fullmatch(r"127\.0\.0\.1:\d+", word)]


def _nginx_upstreams() -> list[str]:
    return re.findall(r"^\s*server (127\.0\.0\.1:\d+)", NGINX_SITE.read_text(), flags=re.MULTILINE)


def _scrape_targets(job: str) -> list[str]:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (scrape,) = [scrape for scrape in config["scrape_configs"] if scrape["job_name"] == job]
    return [target for static in scrape["static_configs"] for target in static["targets"]]


def test_both_proxies_and_prometheus_name_the_same_processes():
    web = ["127.0.0.1:8081", "127.0.0.1:8082"]
    assert _caddy_upstreams() == web
    assert _nginx_upstreams() == web
    assert _scrape_targets("wardwatch-web") == web
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    assert _scrape_targets("wardwatch-worker") == [f"127.0.0.1:{config['operations']['worker_metrics_port']}"]


def test_the_proxies_do_not_serve_metrics_to_the_internet():
    assert re.search(r"@metrics path /metrics /metrics/\*\n\s*respond @metrics 404", CADDYFILE.read_text())
    site = NGINX_SITE.read_text()
    assert re.search(r"location = /metrics \{\s*return 404;", site)
    assert re.search(r"location \^~ /metrics/ \{\s*return 404;", site)


def test_promtool_checks_the_rules_and_their_unit_tests():
    promtool = _tool("promtool")
    checked = _run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every alert fires on what it is about, and not on healthy figures (wardwatch-rules.test.yml).
    tested = _run(promtool, "test", "rules", "wardwatch-rules.test.yml", cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_checks_the_scrape_config(tmp_path):
    promtool = _tool("promtool")
    token = tmp_path / "token"
    token.write_text("a-metrics-token\n")
    shutil.copy(RULES, tmp_path / RULES.name)
    text = SCRAPE_CONFIG.read_text()
    text = text.replace("/etc/prometheus/rules/", f"{tmp_path}/").replace(
        "/etc/prometheus/wardwatch-metrics-token", str(token)
    )
    (tmp_path / "prometheus.yml").write_text(text)
    checked = _run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _series_names(exposition: str) -> set[str]:
    """The sample names a scrape of this exposition can give: a counter's `_total`, a histogram's
    `_bucket`, `_sum` and `_count`, a gauge's own name (whether or not a sample was counted yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in suffixes.get(family.type, ("",))
    }


async def test_the_rules_use_only_metrics_the_application_exports(client):
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    exported = _series_names(scraped.text)
    used = {name for rule in _rules() for name in re.findall(r"\b(wardwatch_[a-z0-9_]+)", rule["expr"])}
    assert used, "the rules name no metric"
    assert used - exported == set()
    # Besides them, only Prometheus's own `up` (whether the scrape answered).
    others = {
        name
        for rule in _rules()
        for name in re.findall(r"\b([a-z_]+)\{", re.sub(r"\bwardwatch_[a-z0-9_]+", "", rule["expr"]))
    }
    assert others <= {"up"}


def test_every_alert_is_explained_in_the_guide():
    guide = GUIDE.read_text(encoding="utf-8")
    for rule in _rules():
        assert f"`{rule['alert']}`" in guide, rule["alert"]
        assert rule["annotations"]["runbook"] == "docs/DEPLOY.md#alerts"
    assert "\n## Alerts\n" in guide


def test_the_guide_names_every_file_of_deploy():
    guide = GUIDE.read_text(encoding="utf-8")
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            assert f"deploy/{path.relative_to(DEPLOY)}" in guide, path


def test_every_table_of_the_guide_keeps_its_columns():
    """A `|` in a cell (a shell pipe in a command) would push the rest of its row one column on."""
    width = None
    for number, line in enumerate(GUIDE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|"):
            width = None
            continue
        cells = line.replace("\\|", "").count("|")
        width = width or cells
        assert cells == width, f"docs/DEPLOY.md line {number}: {cells - 1} columns, the table has {width - 1}"


def test_every_command_the_guide_gives_is_one_python_m_bot_takes():
    given = re.findall(r"sudo wardwatch ([^`|#\n]+)", GUIDE.read_text(encoding="utf-8"))
    commands = [command.strip() for command in given if not command.startswith("COMMAND")]
    assert len(commands) > 10
    parser = _parser()
    for command in commands:
        parser.parse_args(shlex.split(command))  # exits, failing the test, on what it does not take


def _example_lines() -> dict[str, str]:
    """The variables of the example, set or commented out, with their example values."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found.setdefault(match[2], match[3] if not match[1] else None)
    return found


def _variables_the_service_reads() -> set[str]:
    settings = (PROJECT_ROOT / "bot" / "platform" / "settings.py").read_text()
    logs = (PROJECT_ROOT / "bot" / "platform" / "logs.py").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    environment_table = readme.split("Environment variables override the file", 1)[1].split("\n\n", 2)[1]
    documented = {
        name
        for row in environment_table.splitlines()[2:]
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }
    read = set(re.findall(r'_env\(environ, "([A-Z0-9_]+)"\)', settings))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', logs))
    return documented | read


def test_the_env_example_names_every_variable_the_service_reads():
    variables = _variables_the_service_reads()
    assert {"SECRET_KEY", "DATABASE_URL", "LOG_FORMAT", "METRICS_TOKEN", "PUBLIC_BASE_URL"} <= variables
    assert variables - set(_example_lines()) == set()


# What an operator fills in where the example leaves a secret or an account's value empty.
FILLED_IN = {
    "SECRET_KEY": "an-example-secret-key-of-32-characters-or-more",
    "METRICS_TOKEN": "an-example-metrics-token",
    "TELEGRAM_BOT_TOKEN": "123456:ABC-example",
    "TELEGRAM_WEBHOOK_SECRET": "example-webhook-secret",
    "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
    "TWILIO_AUTH_TOKEN": "example-auth-token",
    "TWILIO_SMS_FROM": "+15005550006",
    "TWILIO_WHATSAPP_FROM": "whatsapp:+14155238886",
}


def test_the_env_example_filled_in_is_a_configuration_the_service_accepts(tmp_path):
    environ = {name: value or FILLED_IN[name] for name, value in _example_lines().items() if value is not None}
    # The operator's copy of config.yaml, with the WhatsApp templates TWILIO_WHATSAPP_FROM asks for.
    environ["BOT_CONFIG"] = str(config_with_templates(tmp_path))
    settings = load_settings(environ)
    assert settings.database_url == "postgresql+asyncpg://wardwatch@/wardwatch?host=/run/postgresql"
    assert settings.channels_configured and settings.otp_provider == "twilio_sms"
    assert settings.secret_key_or_local(tmp_path) == FILLED_IN["SECRET_KEY"].encode()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)  # the units give their own


def test_caddy_validates_the_caddyfile(tmp_path):
    caddy = _tool("caddy")
    site = tmp_path / "Caddyfile"
    site.write_text(CADDYFILE.read_text().replace("/var/log/caddy/", f"{tmp_path}/"))
    environment = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    validated = _run(caddy, "validate", "--adapter", "caddyfile", "--config", str(site), env=environment)
    assert validated.returncode == 0, validated.stderr
    formatted = _run(caddy, "fmt", str(CADDYFILE), env=environment)
    assert formatted.stdout == CADDYFILE.read_text(), "caddy fmt would change the Caddyfile"


def _nginx_site_with_a_certificate(directory: Path) -> str:
    """The site with a self-signed certificate of its own in place of certbot's."""
    openssl = _tool("openssl")
    made = _run(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=wardwatch.example.org",
        "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return NGINX_SITE.read_text().replace("/etc/letsencrypt/live/wardwatch.example.org/", f"{directory}/")


def _nginx_main(directory: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf gives the site, in `directory`."""
    return (
        f"pid {directory}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {directory}/site.conf;\n}}\n"
    )


def test_nginx_accepts_the_site(tmp_path):
    nginx = _tool("nginx")
    (tmp_path / "site.conf").write_text(_nginx_site_with_a_certificate(tmp_path))
    (tmp_path / "nginx.conf").write_text(_nginx_main(tmp_path))
    tested = _run(nginx, "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf"))
    assert tested.returncode == 0, tested.stderr


def test_the_operators_command_is_valid_sh():
    checked = _run("sh", "-n", str(DEPLOY / "bin" / "wardwatch"))
    assert checked.returncode == 0, checked.stderr
    assert os.access(DEPLOY / "bin" / "wardwatch", os.X_OK)


# --- the proxies at work: each in front of two web servers, as uvicorn serves the web processes ---


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: two of them, stopped in another order than
    started, would leave the first one's handler for SIGINT and SIGTERM on the test process."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Backend:
    """A web process as the proxies see it: uvicorn (with its defaults, as `bot.app` runs it),
    answering every request with what it saw: its port, the client's address and scheme, the path."""

    def __init__(self) -> None:
        self.port = free_port()
        self.paths: list[str] = []
        self._server = _Server(
            uvicorn.Config(
                self._app, host="127.0.0.1", port=self.port, interface="asgi3", lifespan="off", log_level="warning"
            )
        )
        self._serving: asyncio.Task | None = None

    async def _app(self, scope, receive, send) -> None:
        self.paths.append(scope["path"])
        seen = {"port": self.port, "client": scope["client"][0], "scheme": scope["scheme"], "path": scope["path"]}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(seen).encode()})

    async def start(self) -> None:
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 (uvicorn gives a flag, not an event)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._serving is not None:
            await self._serving


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [Backend(), Backend()]
    for backend in started:
        await backend.start()
    yield started
    for backend in started:
        await backend.stop()


@contextmanager
def _running(*command: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=30)


async def _when_serving(http: httpx.AsyncClient, process: subprocess.Popen) -> None:
    """Wait until the proxy answers (it may take a moment to start); fail at once if it exits."""
    for _ in range(200):
        if process.poll() is not None:
            pytest.fail(f"the proxy exited with {process.returncode}: {process.communicate()[0]}")
        try:
            await http.get("/healthz")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    pytest.fail("the proxy did not answer")


async def _check_the_proxy(http: httpx.AsyncClient, backends: list[Backend]) -> None:
    """What docs/DEPLOY.md says of both proxies, seen from a client and from the web processes."""
    for path in ("/metrics", "/metrics/", "/metrics?name=wardwatch_ready"):
        assert (await http.get(path)).status_code == 404
    assert not [path for backend in backends for path in backend.paths if path.startswith("/metrics")]

    # A client cannot pass for another address (the staff login limits count per address); the
    # scheme is https, so the staff cookies are Secure.
    seen = [(await http.get("/api/v1/x", headers={"X-Forwarded-For": "203.0.113.9"})).json() for _ in range(30)]
    assert {(answer["client"], answer["scheme"]) for answer in seen} == {("127.0.0.1", "https")}
    assert {answer["port"] for answer in seen} == {backend.port for backend in backends}

    # One web process stopped (restarting during an upgrade): every request is still answered.
    await backends[0].stop()
    answers = [await http.get("/api/v1/x") for _ in range(10)]
    assert [(answer.status_code, answer.json()["port"]) for answer in answers] == [(200, backends[1].port)] * 10


async def test_caddy_serves_the_web_processes_as_the_guide_says(tmp_path, backends):
    caddy = _tool("caddy")
    port, http_port = free_port(), free_port()
    site = CADDYFILE.read_text()
    site = site.replace("wardwatch.example.org {", f"https://127.0.0.1:{port} {{\n\ttls internal")
    site = site.replace("127.0.0.1:8081 127.0.0.1:8082", " ".join(f"127.0.0.1:{b.port}" for b in backends))
    site = site.replace("/var/log/caddy/", f"{tmp_path}/")
    # Here only: no admin endpoint, no trust store to change, no port 80 for redirects.
    options = f"{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n\tauto_https disable_redirects\n}}\n"
    (tmp_path / "Caddyfile").write_text(options + site)
    environment = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    with _running(
        caddy, "run", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile"), env=environment
    ) as process:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=False) as http:
            await _when_serving(http, process)
            await _check_the_proxy(http, backends)


async def test_nginx_serves_the_web_processes_as_the_guide_says(tmp_path, backends):
    nginx = _tool("nginx")
    port, http_port = free_port(), free_port()
    site = _nginx_site_with_a_certificate(tmp_path)
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;").replace(
        "listen 80;", f"listen 127.0.0.1:{http_port};"
    )
    site = site.replace("    listen [::]:443 ssl http2;\n", "").replace("    listen [::]:80;\n", "")
    site = site.replace("server 127.0.0.1:8081 ", f"server 127.0.0.1:{backends[0].port} ")
    site = site.replace("server 127.0.0.1:8082 ", f"server 127.0.0.1:{backends[1].port} ")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(_nginx_main(tmp_path))
    with _running(
        nginx, "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"
    ) as process:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=False) as http:
            await _when_serving(http, process)
            await _check_the_proxy(http, backends)
