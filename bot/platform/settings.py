"""Settings: config.yaml for every non-secret default, the environment for overrides and secrets.

Everything is validated once, at start. A missing, unknown or mistyped key raises
`SettingsError` whose message names the key in one line, so an operator sees at once what to fix.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)


class SettingsError(Exception):
    """A configuration problem, phrased for the operator: `<where>: <key>: <reason>`."""


# Outside local mode, SECRET_KEY is the one secret behind every hash of codes, keys and pseudonyms.
SECRET_KEY_MIN_LENGTH = 32
_MAKE_A_SECRET_KEY = "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str


class ServerConfig(_Section):
    host: str
    port: int = Field(ge=1, le=65535)
    # The largest request body read, unless a route sets its own.
    max_body_bytes: int = Field(ge=1024)
    # The largest CSV file an admin uploads on the ward page, request and all; at least 1 MiB, as the
    # page names it in MiB.
    upload_max_bytes: int = Field(ge=1024 * 1024)


class LanguagesConfig(_Section):
    default: Literal["en", "bn", "hi"]
    available: list[Literal["en", "bn", "hi"]] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_available(self) -> LanguagesConfig:
        if self.default not in self.available:
            raise ValueError(f"default language {self.default!r} is not in available")
        return self


class OtpConfig(_Section):
    digits: int = Field(ge=6, le=8)
    valid_seconds: int = Field(gt=0)
    max_wrong_tries: int = Field(gt=0)
    wrong_tries_window_hours: float = Field(gt=0)
    resend_after_seconds: int = Field(ge=0)
    max_sends_per_number_per_hour: int = Field(gt=0)
    max_sends_per_chat_per_hour: int = Field(gt=0)
    max_numbers_per_chat_per_day: int = Field(gt=0)
    max_sends_per_hour: int = Field(gt=0)


class VerificationConfig(_Section):
    days_after_discharge: int = Field(ge=0)
    max_days: int = Field(gt=0)


class OverdueConfig(_Section):
    intensive_care: float = Field(gt=0)
    critical: float = Field(gt=0)
    other: float = Field(gt=0)


class TelegramPacing(_Section):
    messages_per_second: float = Field(gt=0)
    per_chat_messages_per_second: float = Field(gt=0)


class WhatsAppPacing(_Section):
    messages_per_second: float = Field(gt=0)


class PacingConfig(_Section):
    telegram: TelegramPacing
    whatsapp: WhatsAppPacing


class NotificationsConfig(_Section):
    grace_seconds: float = Field(ge=0)
    digest_at: str = Field(pattern=r"^([01]?\d|2[0-3]):[0-5]\d$")
    max_attempts: int = Field(gt=0)
    backoff_first_seconds: float = Field(gt=0)
    backoff_max_seconds: float = Field(gt=0)
    claim_seconds: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    retention_days_after_discharge: int = Field(ge=0)


# WhatsApp templates, for alerts outside the 24 hours after the relative's last message.
ALERT_KINDS = ("update", "discharge", "transfer", "death", "digest", "correction", "new_admission")
# What a template's variables may be filled with (bot.alerts.compose.template_fields).
TEMPLATE_FIELDS = (
    "patient", "hospital", "helpline", "changes", "condition", "care_area", "support", "updated_at", "corrected_at",
)  # fmt: skip
# A death is never told by a bot: its template names the patient and whom to call, nothing else.
DEATH_FIELDS = ("patient", "hospital", "helpline")


class WhatsAppTemplate(_Section):
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    # The template's placeholders ("1", "2", ...) and the field that fills each.
    variables: dict[str, str]

    @field_validator("variables")
    @classmethod
    def _known_fields(cls, variables: dict[str, str]) -> dict[str, str]:
        for placeholder, name in variables.items():
            if not placeholder.replace("_", "").isalnum():
                raise ValueError(f"placeholder {placeholder!r}: letters, digits and _ only")
            if name not in TEMPLATE_FIELDS:
                raise ValueError(f"{placeholder}: unknown field {name!r} (one of {', '.join(TEMPLATE_FIELDS)})")
        return variables


class WhatsAppTemplates(_Section):
    """By kind of alert, by language."""

    update: dict[str, WhatsAppTemplate]
    discharge: dict[str, WhatsAppTemplate]
    transfer: dict[str, WhatsAppTemplate]
    death: dict[str, WhatsAppTemplate]
    digest: dict[str, WhatsAppTemplate]
    # A withdrawn update the relative read: optional in config.yaml, which older installations lack.
    correction: dict[str, WhatsAppTemplate] = Field(default_factory=dict)
    # A new admission under a number the chat confirmed: no variables, since it names nobody.
    new_admission: dict[str, WhatsAppTemplate] = Field(default_factory=dict)

    @field_validator("death")
    @classmethod
    def _death_says_nothing_more(cls, death: dict[str, WhatsAppTemplate]) -> dict[str, WhatsAppTemplate]:
        for language, template in death.items():
            extra = sorted(set(template.variables.values()) - set(DEATH_FIELDS))
            if extra:
                raise ValueError(
                    f"{language}: a death's template may name only {', '.join(DEATH_FIELDS)}, not {', '.join(extra)}"
                )
        return death

    @field_validator("new_admission")
    @classmethod
    def _new_admission_names_nobody(cls, notices: dict[str, WhatsAppTemplate]) -> dict[str, WhatsAppTemplate]:
        for language, template in notices.items():
            if template.variables:
                raise ValueError(f"{language}: a new admission's template names nobody: it takes no variables")
        return notices

    def find(self, kind: str, language: str) -> WhatsAppTemplate | None:
        """The template of that kind in that language, else in English; None when the kind has
        neither (a trial on Twilio's sandbox may have no approved template yet)."""
        by_language: dict[str, WhatsAppTemplate] = getattr(self, kind, {})
        return by_language.get(language) or by_language.get("en")

    def missing(self) -> list[str]:
        """The kinds of alert without an English template: every kind in this table, so that a
        kind added to it is covered too."""
        return [kind for kind in type(self).model_fields if "en" not in getattr(self, kind)]


class RetentionConfig(_Section):
    patient_days_after_discharge: int = Field(gt=0)


class DisclosureConfig(_Section):
    show_vitals: bool
    show_remarks: bool


class OperationsConfig(_Section):
    # `/readyz` answers 503 while a due alert has waited longer than this.
    max_alert_delay_seconds: float = Field(gt=0)
    # Where `python -m bot worker` serves /metrics, /healthz and /readyz (on HOST, as the web server).
    worker_metrics_port: int = Field(ge=1, le=65535)


class FileConfig(_Section):
    """The shape of config.yaml. Every key is required so that a typo cannot silently fall back."""

    phone_region: str = Field(min_length=2, max_length=2)
    hospital_time_zone: str
    database: DatabaseConfig
    server: ServerConfig
    languages: LanguagesConfig
    otp: OtpConfig
    verification: VerificationConfig
    overdue_hours: OverdueConfig
    pacing: PacingConfig
    notifications: NotificationsConfig
    retention: RetentionConfig
    whatsapp_templates: WhatsAppTemplates
    disclosure_defaults: DisclosureConfig
    operations: OperationsConfig

    @field_validator("hospital_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Secrets(_Section):
    """Values that only the environment may give."""

    secret_key: str | None = None
    telegram_bot_token: str | None = None
    telegram_webhook_secret: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    # The bearer token that reads /metrics; without it, only this machine may (handlers/metrics.py).
    metrics_token: str | None = None


class Environment(_Section):
    """The environment variables the README lists, already read."""

    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_webhook_url: str | None = None
    twilio_api_base_url: str | None = None
    twilio_sms_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    # The WhatsApp sender as Twilio writes it: `whatsapp:` and the number in E.164.
    twilio_whatsapp_from: str | None = Field(default=None, pattern=r"^whatsapp:\+[1-9]\d{7,14}$")
    twilio_verify_service_sid: str | None = None
    # Scheme, host and optional path prefix only: Twilio signs the full URL it calls.
    public_base_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    otp_provider: Literal["console", "twilio_sms", "twilio_verify"] | None = None
    # How the logs are written (`bot.platform.logs`): plain text unless `json`.
    log_format: Literal["text", "json"] | None = None


class Settings(_Section):
    config: FileConfig
    env: Environment
    secrets: Secrets
    database_url: str
    host: str
    port: int = Field(ge=1, le=65535)

    @property
    def time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.config.hospital_time_zone)

    @property
    def channels_configured(self) -> bool:
        return bool(self.secrets.telegram_bot_token or self.env.twilio_whatsapp_from)

    @property
    def is_local(self) -> bool:
        """Local mode: an embedded SQLite database and no messaging channel.

        Only there may the service run without SECRET_KEY (see `secret_key_or_local`)."""
        return self.database_url.startswith("sqlite") and not self.channels_configured

    @property
    def otp_provider(self) -> str:
        if self.env.otp_provider:
            return self.env.otp_provider
        sms_sender = self.env.twilio_sms_from or self.env.twilio_messaging_service_sid
        return "twilio_sms" if self.secrets.twilio_account_sid and sms_sender else "console"

    def secret_key_or_local(self, data_dir: Path = Path("data")) -> bytes:
        """The key for hashing codes and API keys.

        Outside local mode it must come from SECRET_KEY, at least `SECRET_KEY_MIN_LENGTH`
        characters. In local mode a random key is made once and kept in `data/secret_key`, so that
        API keys issued locally survive a restart."""
        key = self.secrets.secret_key
        if not self.is_local and not key:
            raise SettingsError(
                "environment: SECRET_KEY: required with PostgreSQL or a messaging channel, "
                f"at least {SECRET_KEY_MIN_LENGTH} characters {_MAKE_A_SECRET_KEY}"
            )
        if not self.is_local and len(key or "") < SECRET_KEY_MIN_LENGTH:
            raise SettingsError(
                f"environment: SECRET_KEY: at least {SECRET_KEY_MIN_LENGTH} characters with PostgreSQL or a "
                f"messaging channel {_MAKE_A_SECRET_KEY}"
            )
        if key:
            return key.encode()
        return _local_secret_key(data_dir)


def _local_secret_key(data_dir: Path) -> bytes:
    """The key kept in `data_dir/secret_key`, made on first use.

    The file is its owner's alone from its first byte (created 0600, never chmod-ed afterwards,
    in a folder created 0700), and whole when it appears: it is written under another name and
    linked into place, so that a process starting at the same moment reads this key or keeps its
    own, never half of one."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = data_dir / f".secret_key.{secrets.token_hex(8)}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:  # another process was first: its key is the one
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def async_database_url(url: str) -> str:
    """Accept the URLs operators usually write and pick the async driver we install."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgresql+psycopg://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _format_error(where: str, error: ValidationError, env_names: bool = False) -> str:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if env_names:
        # Environment values are validated under their field names; show the variable instead.
        loc = [loc[-1].upper()] if loc else []
    key = ".".join(loc) or "(top level)"
    reason = {
        "missing": "missing",
        "extra_forbidden": "unknown key",
    }.get(first["type"], first["msg"])
    return f"{where}: {key}: {reason}"


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read BOT_CONFIG (default config.yaml) and the environment; raise `SettingsError`."""
    environ = os.environ if environ is None else environ
    path = Path(_env(environ, "BOT_CONFIG") or "config.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: not found (set BOT_CONFIG to its path)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise SettingsError(f"{path}: {line}not valid YAML") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: (top level): expected a mapping of keys")
    try:
        # Strict: YAML already gives numbers and booleans their types, so `max_wrong_tries: yes`
        # or `port: "8080"` is a mistake to report, not a value to convert (yes would become 1).
        config = FileConfig.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise SettingsError(_format_error(str(path), exc)) from None

    _check_phone_region(path, config.phone_region)
    _check_retention(path, config)
    try:
        env = Environment(
            telegram_api_base_url=_env(environ, "TELEGRAM_API_BASE_URL")
            or Environment.model_fields["telegram_api_base_url"].default,
            telegram_webhook_url=_env(environ, "TELEGRAM_WEBHOOK_URL"),
            twilio_api_base_url=_env(environ, "TWILIO_API_BASE_URL"),
            twilio_sms_from=_env(environ, "TWILIO_SMS_FROM"),
            twilio_messaging_service_sid=_env(environ, "TWILIO_MESSAGING_SERVICE_SID"),
            twilio_whatsapp_from=_env(environ, "TWILIO_WHATSAPP_FROM"),
            twilio_verify_service_sid=_env(environ, "TWILIO_VERIFY_SERVICE_SID"),
            public_base_url=_env(environ, "PUBLIC_BASE_URL"),
            otp_provider=_env(environ, "OTP_PROVIDER"),
            log_format=_env(environ, "LOG_FORMAT"),
        )
        secrets_ = Secrets(
            secret_key=_env(environ, "SECRET_KEY"),
            telegram_bot_token=_env(environ, "TELEGRAM_BOT_TOKEN"),
            telegram_webhook_secret=_env(environ, "TELEGRAM_WEBHOOK_SECRET"),
            twilio_account_sid=_env(environ, "TWILIO_ACCOUNT_SID"),
            twilio_auth_token=_env(environ, "TWILIO_AUTH_TOKEN"),
            metrics_token=_env(environ, "METRICS_TOKEN"),
        )
        settings = Settings(
            config=config,
            env=env,
            secrets=secrets_,
            database_url=async_database_url(_env(environ, "DATABASE_URL") or config.database.url),
            host=_env(environ, "HOST") or config.server.host,
            port=_env(environ, "PORT") or config.server.port,
        )
    except ValidationError as exc:
        raise SettingsError(_format_error("environment", exc, env_names=True)) from None
    _check_combinations(settings)
    _check_worker_port(path, settings)
    _check_codes_go_by_sms(settings)
    if settings.env.twilio_whatsapp_from:
        _check_templates(path, settings.config)
        _warn_of_missing_templates(path, settings.config)
    return settings


def _check_combinations(settings: Settings) -> None:
    """Variables that only work together: name the one that is missing."""
    env, secrets_ = settings.env, settings.secrets
    needs: list[tuple[bool, str, str]] = [
        (bool(env.telegram_webhook_url), "TELEGRAM_BOT_TOKEN", "required with TELEGRAM_WEBHOOK_URL"),
        (bool(env.telegram_webhook_url), "TELEGRAM_WEBHOOK_SECRET", "required with TELEGRAM_WEBHOOK_URL"),
    ]
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL"):
        needs.append((bool(env.twilio_whatsapp_from), name, "required with TWILIO_WHATSAPP_FROM"))
    provider = settings.otp_provider
    if provider in ("twilio_sms", "twilio_verify"):
        needs += [
            (True, "TWILIO_ACCOUNT_SID", f"required with OTP_PROVIDER={provider}"),
            (True, "TWILIO_AUTH_TOKEN", f"required with OTP_PROVIDER={provider}"),
        ]
    if provider == "twilio_sms":
        needs.append(
            (True, "TWILIO_SMS_FROM", "or TWILIO_MESSAGING_SERVICE_SID: required with OTP_PROVIDER=twilio_sms")
        )
    if provider == "twilio_verify":
        needs.append((True, "TWILIO_VERIFY_SERVICE_SID", "required with OTP_PROVIDER=twilio_verify"))
    given = {
        "TELEGRAM_BOT_TOKEN": secrets_.telegram_bot_token,
        "TELEGRAM_WEBHOOK_SECRET": secrets_.telegram_webhook_secret,
        "TWILIO_ACCOUNT_SID": secrets_.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": secrets_.twilio_auth_token,
        "TWILIO_SMS_FROM": env.twilio_sms_from or env.twilio_messaging_service_sid,
        "TWILIO_VERIFY_SERVICE_SID": env.twilio_verify_service_sid,
        "PUBLIC_BASE_URL": env.public_base_url,
    }
    for applies, name, reason in needs:
        if applies and not given[name]:
            raise SettingsError(f"environment: {name}: {reason}")


def _check_codes_go_by_sms(settings: Settings) -> None:
    """The console provider prints each code: with a messaging channel the relative is not at
    this terminal, and the code with the full number would only reach the logs."""
    env, secrets_ = settings.env, settings.secrets
    if not settings.channels_configured or settings.otp_provider != "console":
        return
    channels = " and ".join(
        name
        for name, value in (
            ("TELEGRAM_BOT_TOKEN", secrets_.telegram_bot_token),
            ("TWILIO_WHATSAPP_FROM", env.twilio_whatsapp_from),
        )
        if value
    )
    if env.otp_provider == "console":
        raise SettingsError(
            f"environment: OTP_PROVIDER: console prints the codes, for local use only; with {channels} the codes "
            "go by SMS: twilio_sms or twilio_verify"
        )
    given = {
        "TWILIO_ACCOUNT_SID": secrets_.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": secrets_.twilio_auth_token,
        "TWILIO_SMS_FROM": env.twilio_sms_from or env.twilio_messaging_service_sid,
    }
    missing = [name for name, value in given.items() if not value]
    listed = f"{', '.join(missing[:-1])} and {missing[-1]}" if len(missing) > 1 else missing[0]
    choices = (
        " (or TWILIO_MESSAGING_SERVICE_SID instead of TWILIO_SMS_FROM, or OTP_PROVIDER=twilio_verify and "
        "TWILIO_VERIFY_SERVICE_SID for Twilio Verify)"
        if "TWILIO_SMS_FROM" in missing
        else ""
    )
    raise SettingsError(
        f"environment: {missing[0]}: required with {channels}, since the codes then go by SMS: set {listed}{choices}"
    )


def _check_templates(path: Path, config: FileConfig) -> None:
    """Each template is in a language we speak."""
    for kind in type(config.whatsapp_templates).model_fields:
        by_language: dict[str, WhatsAppTemplate] = getattr(config.whatsapp_templates, kind)
        for language in by_language:
            if language not in config.languages.available:
                raise SettingsError(f"{path}: whatsapp_templates.{kind}.{language}: not one of languages.available")


def _warn_of_missing_templates(path: Path, config: FileConfig) -> None:
    """WhatsApp delivers an alert outside 24 hours of the relative's last message only as an
    approved template. A first trial (Twilio's sandbox) has none yet: the service starts all the
    same, and says which are missing and what becomes of the alerts that need them."""
    missing = config.whatsapp_templates.missing()
    if missing:
        log.warning(
            "%s: whatsapp_templates: no English template for %s: such alerts reach a relative only within "
            "24 hours of their last message; later ones are kept as dead (python -m bot outbox) until the "
            "template is configured and `python -m bot outbox --retry` is run",
            path, ", ".join(missing),
        )  # fmt: skip


def _check_worker_port(path: Path, settings: Settings) -> None:
    """`python -m bot run` serves the web and the worker's pages on one port; separately, the
    worker could not listen where the web server does."""
    if settings.config.operations.worker_metrics_port == settings.port:
        raise SettingsError(
            f"{path}: operations.worker_metrics_port: {settings.port} is the web server's port (server.port or PORT)"
        )


def _check_retention(path: Path, config: FileConfig) -> None:
    """Erasing a patient's data ends what relatives may read: not before their right to read does."""
    readable_days = config.verification.days_after_discharge
    if config.retention.patient_days_after_discharge < readable_days:
        raise SettingsError(
            f"{path}: retention.patient_days_after_discharge: at least verification.days_after_discharge "
            f"({readable_days}), as long as relatives may read the patient's card"
        )


def _check_phone_region(path: Path, region: str) -> None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(f"{path}: phone_region: unknown region {region!r}")
