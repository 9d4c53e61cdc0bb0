"""Settings as an operator meets them: config.yaml, the environment, and one clear line per mistake."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import cli
from bot.app import Services
from bot.platform.settings import Settings, SettingsError, load_settings
from tests.conftest import PROJECT_ROOT
from tests.support import SETTINGS_ENVIRONMENT, WHATSAPP_TEMPLATES, FileModes

REPO_CONFIG = PROJECT_ROOT / "config.yaml"
DROP = object()
# Codes go by SMS wherever a messaging channel is configured.
SMS = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_SMS_FROM": "+15005550006"}
VERIFY = {
    "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "OTP_PROVIDER": "twilio_verify",
    "TWILIO_VERIFY_SERVICE_SID": "VA1",
}  # fmt: skip
TELEGRAM = {"TELEGRAM_BOT_TOKEN": "123:abc", **SMS}
WHATSAPP = {
    "TWILIO_WHATSAPP_FROM": "whatsapp:+14155238886", "PUBLIC_BASE_URL": "https://example.org", **SMS,
}  # fmt: skip
# Outside local mode SECRET_KEY needs at least 32 characters.
STRONG_KEY = "k" * 32


def changed_config(key: str | None = None, value: Any = None) -> dict:
    """The repo's config.yaml with the dotted `key` set to `value` (or removed with DROP)."""
    config = copy.deepcopy(yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8")))
    if key is not None:
        *parents, last = key.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        if value is DROP:
            del section[last]
        else:
            section[last] = value
    return config


def write_config(directory: Path, config: Any, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def load(tmp_path: Path, key: str | None = None, value: Any = None, **environ: str) -> Settings:
    path = write_config(tmp_path, changed_config(key, value))
    return load_settings({"BOT_CONFIG": str(path), **environ})


def error(tmp_path: Path, key: str | None = None, value: Any = None, **environ: str) -> str:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, key, value, **environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def clean_env(monkeypatch) -> pytest.MonkeyPatch:
    for name in SETTINGS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- config.yaml -------------------------------------------------------------------------------


def test_the_repo_config_loads():
    settings = load_settings({"BOT_CONFIG": str(REPO_CONFIG)})

    assert settings.config.phone_region == "IN"
    assert str(settings.time_zone) == "Asia/Kolkata"
    assert settings.database_url == "sqlite+aiosqlite:///data/wardwatch.sqlite3"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.config.otp.digits == 6
    assert settings.is_local and not settings.channels_configured
    assert settings.otp_provider == "console"


def test_config_yaml_in_the_working_directory_is_the_default(tmp_path, clean_env):
    write_config(tmp_path, changed_config("server.port", 9090))
    clean_env.chdir(tmp_path)

    assert load_settings().port == 9090


@pytest.mark.parametrize(
    "key",
    ["phone_region", "hospital_time_zone", "database", "database.url", "otp.digits",
     "otp.max_sends_per_hour", "pacing.telegram.messages_per_second", "disclosure_defaults.show_vitals",
     "languages.default", "retention", "retention.patient_days_after_discharge", "operations",
     "operations.max_alert_delay_seconds", "server.upload_max_bytes"],
)  # fmt: skip
def test_a_missing_key_is_named(tmp_path, key):
    assert error(tmp_path, key, DROP) == f"{tmp_path / 'config.yaml'}: {key}: missing"


@pytest.mark.parametrize(
    "key, value",
    [("otp.digts", 6), ("databse", {"url": "sqlite:///x"}), ("pacing.sms", {"messages_per_second": 1}),
     ("server.address", "0.0.0.0")],
)  # fmt: skip
def test_an_unknown_key_is_named(tmp_path, key, value):
    assert error(tmp_path, key, value) == f"{tmp_path / 'config.yaml'}: {key}: unknown key"


@pytest.mark.parametrize(
    "key, value, reason",
    [
        ("otp.digits", "six", "valid integer"),
        ("otp.digits", 6.5, "valid integer"),
        ("otp.digits", None, "valid integer"),
        ("otp.max_wrong_tries", True, "valid integer"),  # `yes` in YAML; must not become 1
        ("server.port", "8080", "valid integer"),
        ("server.port", [8080], "valid integer"),
        ("server.upload_max_bytes", "8 MiB", "valid integer"),
        ("overdue_hours.critical", "twelve", "valid number"),
        ("disclosure_defaults.show_vitals", "maybe", "valid boolean"),
        ("disclosure_defaults.show_remarks", 0, "valid boolean"),
        ("languages.available", "en", "valid list"),
        ("database", "sqlite:///x", "valid dictionary"),
        ("database.url", 5, "valid string"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(tmp_path, key, value, reason):
    message = error(tmp_path, key, value)

    assert message.startswith(f"{tmp_path / 'config.yaml'}: {key}: ")
    assert reason in message


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("otp.digits", 4, "otp.digits"),
        ("otp.valid_seconds", 0, "otp.valid_seconds"),
        ("server.port", 70000, "server.port"),
        ("pacing.whatsapp.messages_per_second", -1, "pacing.whatsapp.messages_per_second"),
        ("languages.available", ["en", "fr"], "languages.available.1"),
        ("languages.available", [], "languages.available"),
        ("languages.default", "ur", "languages.default"),
        ("operations.max_alert_delay_seconds", 0, "operations.max_alert_delay_seconds"),
        ("server.upload_max_bytes", 0, "server.upload_max_bytes"),
        ("server.upload_max_bytes", -1, "server.upload_max_bytes"),
        ("server.upload_max_bytes", 1024 * 1024 - 1, "server.upload_max_bytes"),
    ],
)
def test_a_value_out_of_range_is_named(tmp_path, key, value, named):
    assert error(tmp_path, key, value).startswith(f"{tmp_path / 'config.yaml'}: {named}: ")


@pytest.mark.parametrize("days", [0, -1])
def test_patients_data_is_kept_at_least_a_day(tmp_path, days):
    key = "retention.patient_days_after_discharge"
    assert error(tmp_path, key, days).startswith(f"{tmp_path / 'config.yaml'}: {key}: ")


def test_patients_data_is_kept_as_long_as_relatives_may_read_it(tmp_path):
    config = changed_config("verification.days_after_discharge", 10)
    config["retention"]["patient_days_after_discharge"] = 9
    path = write_config(tmp_path, config)

    with pytest.raises(SettingsError) as caught:
        load_settings({"BOT_CONFIG": str(path)})
    assert str(caught.value) == (
        f"{path}: retention.patient_days_after_discharge: at least verification.days_after_discharge (10), "
        "as long as relatives may read the patient's card"
    )
    config["retention"]["patient_days_after_discharge"] = 10
    settings = load_settings({"BOT_CONFIG": str(write_config(tmp_path, config))})
    assert settings.config.retention.patient_days_after_discharge == 10


def test_a_default_language_that_is_not_available_is_refused(tmp_path):
    config = changed_config("languages", {"default": "bn", "available": ["en", "hi"]})
    path = write_config(tmp_path, config)

    with pytest.raises(SettingsError, match=r": languages: .*'bn' is not in available"):
        load_settings({"BOT_CONFIG": str(path)})


@pytest.mark.parametrize("zone", ["Asia/Calcutta2", "Kolkata", "IST+5:30", "", "../etc/passwd", "/etc/localtime"])
def test_an_unknown_time_zone_is_named(tmp_path, zone):
    message = error(tmp_path, "hospital_time_zone", zone)

    assert message.startswith(f"{tmp_path / 'config.yaml'}: hospital_time_zone: ")
    assert "unknown time zone" in message


@pytest.mark.parametrize("region", ["XX", "in", "IND", "I", "", False])  # False: `NO` in YAML 1.1
def test_an_unknown_phone_region_is_named(tmp_path, region):
    assert error(tmp_path, "phone_region", region).startswith(f"{tmp_path / 'config.yaml'}: phone_region: ")


def test_another_phone_region_is_accepted(tmp_path):
    assert load(tmp_path, "phone_region", "BD").config.phone_region == "BD"


def test_a_missing_config_file_says_how_to_point_at_one(tmp_path):
    missing = tmp_path / "nowhere.yaml"

    with pytest.raises(SettingsError, match="nowhere.yaml: not found .*BOT_CONFIG"):
        load_settings({"BOT_CONFIG": str(missing)})


@pytest.mark.parametrize(
    "text, reason",
    [
        ("phone_region: IN\nhospital_time_zone: Asia: Kolkata\n", "line 2: not valid YAML"),
        ("", "(top level)"),
        ("- a\n- b\n", "(top level)"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_keys_is_refused(tmp_path, text, reason):
    path = tmp_path / "config.yaml"
    path.write_text(text)

    with pytest.raises(SettingsError) as caught:
        load_settings({"BOT_CONFIG": str(path)})

    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)


# --- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, used",
    [
        ("postgresql://ward:pw@db.example:5432/ww", "postgresql+asyncpg://ward:pw@db.example:5432/ww"),
        ("postgres://ward:pw@db.example/wardwatch", "postgresql+asyncpg://ward:pw@db.example/wardwatch"),
        ("postgresql+psycopg://ward@db/ww", "postgresql+asyncpg://ward@db/ww"),
        ("postgresql+asyncpg://ward@db/ww", "postgresql+asyncpg://ward@db/ww"),
        ("sqlite:////var/lib/wardwatch/ww.sqlite3", "sqlite+aiosqlite:////var/lib/wardwatch/ww.sqlite3"),
        ("sqlite+aiosqlite:///ww.sqlite3", "sqlite+aiosqlite:///ww.sqlite3"),
    ],
)
def test_database_url_overrides_the_config_and_gets_the_async_driver(tmp_path, given, used):
    assert load(tmp_path, DATABASE_URL=given).database_url == used


def test_the_config_database_url_gets_the_async_driver_too(tmp_path):
    assert load(tmp_path, "database.url", "postgresql://db/ww").database_url == "postgresql+asyncpg://db/ww"


def test_host_and_port_override_the_config(tmp_path):
    settings = load(tmp_path, HOST="0.0.0.0", PORT="9000")

    assert (settings.host, settings.port) == ("0.0.0.0", 9000)


def test_blank_variables_count_as_unset(tmp_path):
    settings = load(tmp_path, DATABASE_URL="  ", HOST="", PORT=" ", SECRET_KEY=" ")

    assert (settings.database_url, settings.host, settings.port) == (
        "sqlite+aiosqlite:///data/wardwatch.sqlite3", "127.0.0.1", 8080,
    )  # fmt: skip
    assert settings.secrets.secret_key is None


@pytest.mark.parametrize("port", ["eighty", "0", "65536", "80.5", "-1"])
def test_a_bad_port_names_port(tmp_path, port):
    assert error(tmp_path, PORT=port).startswith("environment: PORT: ")


@pytest.mark.parametrize(
    "environ, missing",
    [
        ({"OTP_PROVIDER": "twilio_sms", "TWILIO_AUTH_TOKEN": "t", "TWILIO_SMS_FROM": "+1500"}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_SMS_FROM": "+15005550006"}, "TWILIO_AUTH_TOKEN"),
        ({"OTP_PROVIDER": "twilio_sms", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_SMS_FROM"),
        (
            {"OTP_PROVIDER": "twilio_verify", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"},
            "TWILIO_VERIFY_SERVICE_SID",
        ),
        ({**WHATSAPP, "PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL"),
        ({**WHATSAPP, "TWILIO_ACCOUNT_SID": ""}, "TWILIO_ACCOUNT_SID"),
        ({**WHATSAPP, "TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN"),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://example.org/webhooks/telegram", "TELEGRAM_BOT_TOKEN": "1:a"},
            "TELEGRAM_WEBHOOK_SECRET",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://example.org/webhooks/telegram", "TELEGRAM_WEBHOOK_SECRET": "s"},
            "TELEGRAM_BOT_TOKEN",
        ),
    ],
)
def test_a_variable_needed_by_another_is_named_when_missing(tmp_path, environ, missing):
    assert error(tmp_path, SECRET_KEY="k", **environ).startswith(f"environment: {missing}: ")


def test_a_whatsapp_channel_with_every_variable_loads(tmp_path):
    settings = load(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, SECRET_KEY="k", **WHATSAPP)

    assert settings.channels_configured and not settings.is_local
    assert settings.env.public_base_url == "https://example.org"


def template_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "whatsapp_templates" in r.message]


def test_whatsapp_starts_without_templates_and_a_warning_names_each_missing_kind(tmp_path, caplog):
    """A first trial on Twilio's sandbox has no approved template: it starts, and says which are missing."""
    settings = load(tmp_path, SECRET_KEY="k", **WHATSAPP)

    assert settings.env.twilio_whatsapp_from and settings.config.whatsapp_templates.missing()
    [warning] = template_warnings(caplog)
    kinds = list(type(settings.config.whatsapp_templates).model_fields)  # a kind added later is named too
    assert f"no English template for {', '.join(kinds)}:" in warning, warning
    assert "kept as dead (python -m bot outbox)" in warning and "python -m bot outbox --retry" in warning


def test_the_warning_names_only_the_kinds_without_an_english_template(tmp_path, caplog):
    without_digest = {**WHATSAPP_TEMPLATES, "digest": {"bn": WHATSAPP_TEMPLATES["update"]["bn"]}}
    load(tmp_path, "whatsapp_templates", without_digest, SECRET_KEY="k", **WHATSAPP)
    [warning] = template_warnings(caplog)
    assert "no English template for digest:" in warning, warning

    caplog.clear()
    load(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, SECRET_KEY="k", **WHATSAPP)
    load(tmp_path, SECRET_KEY="k")  # without WhatsApp, none is needed (config.yaml ships without)
    assert template_warnings(caplog) == []


@pytest.mark.parametrize(
    "kind, language, template, reason",
    [
        ("update", "en", {"content_sid": "HX123", "variables": {}}, "content_sid: String should match pattern"),
        ("update", "en", {"content_sid": "HX" + "a" * 32, "variables": {"1": "diagnosis"}}, "unknown field 'diagnosis'"),
        ("update", "en", {"content_sid": "HX" + "a" * 32, "variables": {"1 ": "patient"}}, "placeholder '1 '"),
        ("update", "en", {"content_sid": "HX" + "a" * 32}, "update.en.variables: missing"),
        ("death", "en", {"content_sid": "HX" + "a" * 32, "variables": {"1": "patient", "2": "condition"}},
         "death: Value error, en: a death's template may name only patient, hospital, helpline, not condition"),
        ("update", "ta", WHATSAPP_TEMPLATES["update"]["en"], "whatsapp_templates.update.ta: not one of languages.available"),
    ],
)  # fmt: skip
def test_a_wrong_whatsapp_template_is_named(tmp_path, kind, language, template, reason):
    templates = {**WHATSAPP_TEMPLATES, kind: {**WHATSAPP_TEMPLATES[kind], language: template}}
    message = error(tmp_path, "whatsapp_templates", templates, SECRET_KEY="k", **WHATSAPP)
    assert "whatsapp_templates." in message and reason in message, message


@pytest.mark.parametrize(
    "name, value",
    [
        ("TWILIO_WHATSAPP_FROM", "+14155238886"),  # without "whatsapp:"
        ("TWILIO_WHATSAPP_FROM", "whatsapp:14155238886"),
        ("PUBLIC_BASE_URL", "example.org"),
        ("PUBLIC_BASE_URL", "https://example.org/?x=1"),
    ],
)
def test_a_malformed_whatsapp_variable_is_named(tmp_path, name, value):
    assert error(tmp_path, SECRET_KEY="k", **{**WHATSAPP, name: value}).startswith(f"environment: {name}: ")


def test_a_bad_otp_provider_names_it(tmp_path):
    assert error(tmp_path, OTP_PROVIDER="carrier-pigeon").startswith("environment: OTP_PROVIDER: ")


def test_load_settings_reads_the_process_environment(tmp_path, clean_env):
    clean_env.setenv("BOT_CONFIG", str(write_config(tmp_path, changed_config())))
    clean_env.setenv("PORT", "8181")
    clean_env.setenv("DATABASE_URL", "postgresql://db/ww")

    settings = load_settings()

    assert (settings.port, settings.database_url) == (8181, "postgresql+asyncpg://db/ww")


@pytest.mark.parametrize(
    "environ, provider",
    [
        ({}, "console"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_SMS_FROM": "+15005550006"}, "twilio_sms"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_MESSAGING_SERVICE_SID": "MG1"}, "twilio_sms"),
        ({"TWILIO_SMS_FROM": "+15005550006"}, "console"),  # no account
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_SMS_FROM": "+1500", "OTP_PROVIDER": "console"}, "console"),
        (
            {
                "OTP_PROVIDER": "twilio_verify",
                "TWILIO_ACCOUNT_SID": "AC1",
                "TWILIO_AUTH_TOKEN": "t",
                "TWILIO_VERIFY_SERVICE_SID": "VA1",
            },
            "twilio_verify",
        ),
    ],
)
def test_the_otp_provider_follows_what_is_configured(tmp_path, environ, provider):
    assert load(tmp_path, **environ).otp_provider == provider


# --- codes with a messaging channel: by SMS, never printed ----------------------------------------

SMS_CHOICES = (
    "(or TWILIO_MESSAGING_SERVICE_SID instead of TWILIO_SMS_FROM, "
    "or OTP_PROVIDER=twilio_verify and TWILIO_VERIFY_SERVICE_SID for Twilio Verify)"
)


@pytest.mark.parametrize(
    "environ, message",
    [
        (
            {"TELEGRAM_BOT_TOKEN": "123:abc"},
            "environment: TWILIO_ACCOUNT_SID: required with TELEGRAM_BOT_TOKEN, since the codes then go by SMS: "
            f"set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_SMS_FROM {SMS_CHOICES}",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": "123:abc", "TWILIO_SMS_FROM": "+15005550006"},
            "environment: TWILIO_ACCOUNT_SID: required with TELEGRAM_BOT_TOKEN, since the codes then go by SMS: "
            "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
        ),
        (
            {**WHATSAPP, "TWILIO_SMS_FROM": ""},
            "environment: TWILIO_SMS_FROM: required with TWILIO_WHATSAPP_FROM, since the codes then go by SMS: "
            f"set TWILIO_SMS_FROM {SMS_CHOICES}",
        ),
        (
            {**TELEGRAM, **WHATSAPP, "TWILIO_SMS_FROM": ""},
            "environment: TWILIO_SMS_FROM: required with TELEGRAM_BOT_TOKEN and TWILIO_WHATSAPP_FROM, since the "
            f"codes then go by SMS: set TWILIO_SMS_FROM {SMS_CHOICES}",
        ),
        (
            {**TELEGRAM, "OTP_PROVIDER": "console"},
            "environment: OTP_PROVIDER: console prints the codes, for local use only; with TELEGRAM_BOT_TOKEN the "
            "codes go by SMS: twilio_sms or twilio_verify",
        ),
        (
            {**WHATSAPP, "OTP_PROVIDER": "console"},
            "environment: OTP_PROVIDER: console prints the codes, for local use only; with TWILIO_WHATSAPP_FROM the "
            "codes go by SMS: twilio_sms or twilio_verify",
        ),
    ],
    ids=["telegram", "telegram-no-account", "whatsapp", "both", "telegram-console", "whatsapp-console"],
)
def test_a_messaging_channel_without_sms_for_the_codes_is_refused(tmp_path, environ, message):
    """With a channel, the relative is not at this terminal: a printed code would only reach the logs."""
    strong = {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": "postgresql://db/ww"}

    assert error(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, **strong, **environ) == message


@pytest.mark.parametrize(
    "environ, provider",
    [
        (TELEGRAM, "twilio_sms"),
        ({**TELEGRAM, "TWILIO_SMS_FROM": "", "TWILIO_MESSAGING_SERVICE_SID": "MG1"}, "twilio_sms"),
        ({"TELEGRAM_BOT_TOKEN": "123:abc", **VERIFY}, "twilio_verify"),
        (WHATSAPP, "twilio_sms"),
        ({**WHATSAPP, "TWILIO_SMS_FROM": "", **VERIFY}, "twilio_verify"),
    ],
)
def test_a_messaging_channel_with_sms_for_the_codes_loads(tmp_path, environ, provider):
    settings = load(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, SECRET_KEY=STRONG_KEY, **environ)

    assert settings.channels_configured and settings.otp_provider == provider


# --- SECRET_KEY --------------------------------------------------------------------------------


def test_local_mode_makes_a_secret_key_once_and_keeps_it(tmp_path):
    settings = load(tmp_path)
    data = tmp_path / "data"
    previous = os.umask(0o022)  # the usual umask: what a file gets unless its maker says otherwise
    try:
        with FileModes(data) as seen:
            key = settings.secret_key_or_local(data)
    finally:
        os.umask(previous)

    assert settings.is_local and len(key) >= 32
    # Readable by its owner alone from the moment it exists (no moment of 0644 before a chmod), and
    # so is anything else written in the folder on the way; only the owner may enter the folder.
    assert seen.modes("secret_key") and set(seen.modes("secret_key")) <= {None, 0o600}, seen.seen
    assert {mode for name in seen.seen for mode in seen.modes(name)} <= {None, 0o600}, seen.seen
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert load(tmp_path).secret_key_or_local(data) == key


def test_secret_key_from_the_environment_is_used_and_nothing_is_written(tmp_path):
    key = "a-secret-key-of-32-characters-or"
    settings = load(tmp_path, SECRET_KEY=key, DATABASE_URL="postgresql://db/ww")

    assert settings.secret_key_or_local(tmp_path / "data") == key.encode()
    assert not (tmp_path / "data").exists()


OUTSIDE_LOCAL_MODE = pytest.mark.parametrize(
    "environ", [{"DATABASE_URL": "postgresql://db/ww"}, TELEGRAM, WHATSAPP], ids=["postgresql", "telegram", "whatsapp"]
)


@OUTSIDE_LOCAL_MODE
@pytest.mark.parametrize("key", ["a", "s3cret", "k" * 31, " " + "k" * 31 + " "])
def test_secret_key_outside_local_mode_needs_32_characters(tmp_path, environ, key):
    settings = load(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, SECRET_KEY=key, **environ)

    with pytest.raises(SettingsError) as caught:
        settings.secret_key_or_local(tmp_path / "data")

    assert str(caught.value) == (
        "environment: SECRET_KEY: at least 32 characters with PostgreSQL or a messaging channel "
        "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"
    )
    assert not (tmp_path / "data").exists()


@OUTSIDE_LOCAL_MODE
def test_a_secret_key_of_32_characters_is_enough(tmp_path, environ):
    settings = load(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, SECRET_KEY=STRONG_KEY, **environ)

    assert settings.secret_key_or_local(tmp_path / "data") == STRONG_KEY.encode()


def test_a_short_secret_key_is_accepted_in_local_mode(tmp_path):
    settings = load(tmp_path, SECRET_KEY="s3cret")

    assert settings.is_local and settings.secret_key_or_local(tmp_path / "data") == b"s3cret"


@OUTSIDE_LOCAL_MODE
def test_secret_key_is_required_outside_local_mode(tmp_path, environ):
    settings = load(tmp_path, "whatsapp_templates", WHATSAPP_TEMPLATES, **environ)

    assert not settings.is_local
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        settings.secret_key_or_local(tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_services_refuse_to_start_without_secret_key_outside_local_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SettingsError, match="environment: SECRET_KEY: "):
        Services.build(load(tmp_path, DATABASE_URL="postgresql://db/ww"))


# --- the command line --------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [["hospitals", "list"], ["db", "upgrade"], ["hospitals", "rotate-key", "MRB"]])
def test_the_cli_names_the_broken_key_in_one_line_and_exits_2(tmp_path, clean_env, capsys, command):
    clean_env.chdir(tmp_path)
    clean_env.setenv("BOT_CONFIG", str(write_config(tmp_path, changed_config("otp.digits", DROP))))

    code, out, err = run_cli(capsys, *command)

    assert code == 2
    assert out == ""
    assert err.splitlines() == [f"configuration error: {tmp_path / 'config.yaml'}: otp.digits: missing"]
    assert not (tmp_path / "data").exists()


def test_the_cli_names_a_bad_environment_variable(tmp_path, clean_env, capsys):
    clean_env.chdir(tmp_path)
    clean_env.setenv("BOT_CONFIG", str(REPO_CONFIG))
    clean_env.setenv("PORT", "http")

    code, _, err = run_cli(capsys, "hospitals", "list")

    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("configuration error: environment: PORT: ")


def test_the_cli_refuses_postgresql_without_secret_key(tmp_path, clean_env, capsys):
    clean_env.chdir(tmp_path)
    clean_env.setenv("BOT_CONFIG", str(REPO_CONFIG))
    clean_env.setenv("DATABASE_URL", "postgresql://ward@127.0.0.1:9/nowhere")

    code, _, err = run_cli(capsys, "hospitals", "list")

    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("configuration error: environment: SECRET_KEY: ")


@pytest.mark.parametrize("command", ["run", "web", "worker"])
def test_the_cli_refuses_telegram_without_sms_and_starts_nothing(tmp_path, clean_env, capsys, command):
    clean_env.chdir(tmp_path)
    clean_env.setenv("BOT_CONFIG", str(REPO_CONFIG))
    clean_env.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    clean_env.setenv("SECRET_KEY", STRONG_KEY)

    code, out, err = run_cli(capsys, command)

    assert code == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("configuration error: environment: TWILIO_ACCOUNT_SID: required with TELEGRAM_BOT_TOKEN")
    assert not (tmp_path / "data").exists()


def test_the_cli_refuses_a_short_secret_key_outside_local_mode(tmp_path, clean_env, capsys):
    clean_env.chdir(tmp_path)
    clean_env.setenv("BOT_CONFIG", str(REPO_CONFIG))
    clean_env.setenv("DATABASE_URL", "postgresql://ward@127.0.0.1:9/nowhere")
    clean_env.setenv("SECRET_KEY", "s3cret")

    code, _, err = run_cli(capsys, "hospitals", "list")

    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("configuration error: environment: SECRET_KEY: at least 32 characters ")


def test_the_cli_says_where_the_config_was_looked_for(tmp_path, clean_env, capsys):
    clean_env.chdir(tmp_path)

    code, _, err = run_cli(capsys, "hospitals", "list")

    assert code == 2
    assert err.splitlines() == ["configuration error: config.yaml: not found (set BOT_CONFIG to its path)"]
