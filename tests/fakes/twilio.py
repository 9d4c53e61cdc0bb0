"""A local fake of the parts of the Twilio REST API we call, for the real twilio client to talk to
over HTTP: the tests go through the real library and stop only at the network.

    async with FakeTwilio() as twilio:      # serves on 127.0.0.1, a free port: twilio.url
        ...TWILIO_API_BASE_URL=twilio.url...
        twilio.messages                     # SMS accepted, oldest first
        twilio.verifications, twilio.checks # Verify v2

Served, with Twilio's paths, answers and error JSON:
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (To, From or MessagingServiceSid, Body
  or ContentSid with ContentVariables); SMS, or WhatsApp when From and To are `whatsapp:+...`;
- `POST /v2/Services/{ServiceSid}/Verifications` (To, Channel, Locale): makes a code, pending;
- `POST /v2/Services/{ServiceSid}/VerificationCheck` (To or VerificationSid, Code).
Every request needs HTTP basic auth with the account SID and auth token (else 401, code 20003).

Steering a test:
- `fail(number, code, status)`: requests for that number get that Twilio error (a WhatsApp
  number as Twilio writes it: `fail("whatsapp:+91...", 21610)`);
- `hold()` ... `release()`: requests are received (`arrived` is set) but not answered until
  released (`answered` is set after each answer), to see who waits for whom;
- `expire(number)`: Twilio's side of a pending verification ends (checks then get 404).

Twilio's side of our webhooks, signed with twilio's own `RequestValidator`: `post_whatsapp(http,
text, sender)` posts a relative's WhatsApp message to the app as Twilio does, `post_status(http,
message, status)` the delivery report of a message the fake accepted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
SMS_FROM = "+15005550006"
WHATSAPP_FROM = "whatsapp:+14155238886"  # the number of Twilio's WhatsApp sandbox
WHATSAPP_WEBHOOK_PATH = "/webhooks/twilio/whatsapp"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
MESSAGING_SERVICE_SID = "MG" + "6" * 32
VERIFY_SERVICE_SID = "VA" + "7" * 32
# Locales this fake's Verify has translations for; any other gets 404, as Twilio answers.
VERIFY_LOCALES = frozenset({"en", "en-GB", "hi", "mr", "kn", "te"})

_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_CONTENT_SID = re.compile(r"^HX[0-9a-f]{32}$")
_VERIFY_CHANNELS = {"sms", "call", "email", "whatsapp", "sna"}
MAX_BODY = 1600
MAX_CHECKS = 5  # Verify: wrong checks of one verification before 60202
MAX_SENDS = 5  # Verify: sends of one verification before 60203


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _segments(body: str) -> int:
    """SMS parts: 160 characters (GSM-7) or 70 (UCS-2, e.g. Bengali) alone, 153 or 67 each joined."""
    single, joined = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // joined)


def _rfc2822(moment: datetime) -> str:  # the 2010-04-01 API's dates
    return format_datetime(moment, usegmt=False).replace("-0000", "+0000")


def _iso(moment: datetime) -> str:  # Verify v2's dates
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Attempt:
    """Every request that passed authentication, answered or refused."""

    path: str
    form: dict[str, str]
    status: int
    error_code: int | None = None


@dataclass
class Message:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status: str
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    status_callback: str | None = None  # where Twilio would report its delivery
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Verification:
    sid: str
    service_sid: str
    to: str
    channel: str
    locale: str | None
    code: str
    status: str = "pending"  # pending, approved, canceled
    sends: int = 1
    wrong_checks: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Check:
    to: str
    code: str
    status: str  # approved or pending


class _TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return JSONResponse(body, status_code=self.status)


def _not_found(request: Request) -> _TwilioError:
    # Twilio names the resource without the version prefix of the Verify API.
    path = request.url.path.removeprefix("/v2")
    return _TwilioError(404, 20404, f"The requested resource {path} was not found")


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: a test's Ctrl-C is pytest's."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class FakeTwilio:
    def __init__(
        self,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        senders: frozenset[str] = frozenset({SMS_FROM, WHATSAPP_FROM}),
        messaging_services: frozenset[str] = frozenset({MESSAGING_SERVICE_SID}),
        verify_services: frozenset[str] = frozenset({VERIFY_SERVICE_SID}),
        verify_locales: frozenset[str] = VERIFY_LOCALES,
    ) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.senders, self.messaging_services = senders, messaging_services
        self.verify_services, self.verify_locales = verify_services, verify_locales
        self.url = ""
        self.attempts: list[Attempt] = []
        self.messages: list[Message] = []
        self.verifications: list[Verification] = []
        self.checks: list[Check] = []
        self.unauthorized = 0
        self.arrived = asyncio.Event()  # a request passed authentication
        self.answered = asyncio.Event()  # a request was answered
        self._gate: asyncio.Event | None = None
        self._failures: dict[str, _TwilioError] = {}
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None
        self.app = Starlette(
            routes=[
                Route("/2010-04-01/Accounts/{account_sid}/Messages.json", self._messages, methods=["POST"]),
                Route("/v2/Services/{service_sid}/Verifications", self._verifications, methods=["POST"]),
                Route("/v2/Services/{service_sid}/VerificationCheck", self._verification_check, methods=["POST"]),
            ]
        )

    # --- steering ------------------------------------------------------------------------------

    def fail(self, number: str, code: int = 21211, status: int = 400, message: str | None = None) -> None:
        """Refuse every request for `number` with this Twilio error."""
        text = message or {
            21211: f"The 'To' number {number} is not a valid phone number.",
            21610: "Attempt to send to unsubscribed recipient",
            20500: "An internal server error has occurred",
            60200: f"Invalid parameter `To`: {number}",
            60203: "Max send attempts reached",
            60410: "Verification delivery attempt blocked",
        }.get(code, "Error")
        self._failures[number] = _TwilioError(status, code, text)

    def clear_failures(self) -> None:
        self._failures.clear()

    def hold(self) -> None:
        """Receive requests but answer none until `release()`."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    def messages_to(self, to: str) -> list[Message]:
        """The messages accepted for `to` (`+91...` for SMS, `whatsapp:+91...`), oldest first."""
        return [message for message in self.messages if message.to == to]

    def pending_verification(self, to: str) -> Verification | None:
        for verification in reversed(self.verifications):
            if verification.to == to and verification.status == "pending":
                return verification
        return None

    def expire(self, to: str) -> None:
        """Twilio's side of a verification ends (its ten minutes are up): checks now get 404."""
        for verification in self.verifications:
            if verification.to == to and verification.status == "pending":
                verification.status = "canceled"

    # --- server --------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTwilio:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the fake Twilio API stopped before it started")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.release()
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task

    # --- requests ------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(password, self.auth_token)

    async def _serve(self, request: Request, answer) -> JSONResponse:
        """Authenticate, read the form, wait at the gate, answer (or refuse with a Twilio error)."""
        if not self._authorized(request):
            self.unauthorized += 1
            return _TwilioError(401, 20003, "Authenticate").response()
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.arrived.set()
        if self._gate is not None:
            await self._gate.wait()
        try:
            status, body = answer(request, form)
            attempt = Attempt(request.url.path, form, status)
            response = JSONResponse(body, status_code=status)
        except _TwilioError as error:
            attempt = Attempt(request.url.path, form, error.status, error.code)
            response = error.response()
        self.attempts.append(attempt)
        self.answered.set()
        return response

    def _refuse_if_failing(self, to: str) -> None:
        if to in self._failures:
            raise self._failures[to]

    # Messages API (2010-04-01)

    async def _messages(self, request: Request) -> JSONResponse:
        return await self._serve(request, self._create_message)

    def _create_message(self, request: Request, form: dict[str, str]) -> tuple[int, dict]:
        account_sid = request.path_params["account_sid"]
        if account_sid != self.account_sid:
            raise _not_found(request)
        to, body = form.get("To", ""), form.get("Body", "")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        content_sid, variables = form.get("ContentSid"), self._content_variables(form)
        if not to:
            raise _TwilioError(400, 21604, "A 'To' phone number is required.")
        if not body and not content_sid:
            raise _TwilioError(400, 21602, "Message body is required.")
        if content_sid is not None and not _CONTENT_SID.match(content_sid):
            raise _TwilioError(400, 21655, "The ContentSid is Invalid.")
        if not sender and not service:
            raise _TwilioError(400, 21603, "A 'From' phone number is required.")
        whatsapp = to.startswith("whatsapp:")
        if not _E164.match(to.removeprefix("whatsapp:")):
            raise _TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender and whatsapp != sender.startswith("whatsapp:"):
            raise _TwilioError(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        if sender and sender not in self.senders:
            raise _TwilioError(
                400, 21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone number "
                "or short code for your account.",
            )  # fmt: skip
        if service and service not in self.messaging_services:
            raise _TwilioError(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if len(body) > MAX_BODY:
            raise _TwilioError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        self._refuse_if_failing(to)

        # With a Messaging Service and no From, Twilio picks the sender later: "accepted".
        status = "accepted" if service and not sender else "queued"
        message = Message(
            _sid("SM"), to, sender, service, body, status, content_sid, variables, form.get("StatusCallback")
        )
        self.messages.append(message)
        now = _rfc2822(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}"
        return 201, {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    @staticmethod
    def _content_variables(form: dict[str, str]) -> dict[str, str] | None:
        """ContentVariables: a JSON object of the template's placeholders, as a string."""
        if "ContentVariables" not in form:
            return None
        try:
            variables = json.loads(form["ContentVariables"])
        except ValueError:
            variables = None
        if not isinstance(variables, dict):
            raise _TwilioError(400, 21656, "The ContentVariables Parameter is invalid.")
        return variables

    # Verify v2

    def _service(self, request: Request) -> str:
        service_sid = request.path_params["service_sid"]
        if service_sid not in self.verify_services:
            raise _not_found(request)
        return service_sid

    def _verification_json(self, verification: Verification, check: bool = False) -> dict:
        now = _iso(datetime.now(UTC))
        body = {
            "sid": verification.sid,
            "service_sid": verification.service_sid,
            "account_sid": self.account_sid,
            "to": verification.to,
            "channel": verification.channel,
            "status": verification.status,
            "valid": verification.status == "approved",
            "amount": None,
            "payee": None,
            "date_created": _iso(verification.created),
            "date_updated": now,
        }
        if check:
            return {**body, "sna_attempts_error_codes": []}
        return {
            **body,
            "lookup": {"carrier": None},
            "send_code_attempts": [
                {"attempt_sid": _sid("VL"), "channel": verification.channel.upper(), "time": now}
                for _ in range(verification.sends)
            ],
            "sna": None,
            "url": f"https://verify.twilio.com/v2/Services/{verification.service_sid}/Verifications/{verification.sid}",
        }

    async def _verifications(self, request: Request) -> JSONResponse:
        return await self._serve(request, self._create_verification)

    def _create_verification(self, request: Request, form: dict[str, str]) -> tuple[int, dict]:
        service_sid = self._service(request)
        to, channel, locale = form.get("To", ""), form.get("Channel", ""), form.get("Locale")
        if not to:
            raise _TwilioError(400, 60200, "Invalid parameter: To")
        if channel not in _VERIFY_CHANNELS:
            raise _TwilioError(400, 60200, "Invalid parameter: Channel")
        if channel in ("sms", "call", "whatsapp") and not _E164.match(to):
            raise _TwilioError(400, 60200, f"Invalid parameter `To`: {to}")
        if locale is not None and locale not in self.verify_locales:
            raise _not_found(request)
        self._refuse_if_failing(to)

        # A pending verification is sent again with the same code, as Twilio does.
        verification = self.pending_verification(to)
        if verification is not None and verification.service_sid == service_sid:
            if verification.sends >= MAX_SENDS:
                raise _TwilioError(429, 60203, "Max send attempts reached")
            verification.sends += 1
            verification.locale = locale
        else:
            code = "".join(secrets.choice("0123456789") for _ in range(6))
            verification = Verification(_sid("VE"), service_sid, to, channel, locale, code)
            self.verifications.append(verification)
        return 201, self._verification_json(verification)

    async def _verification_check(self, request: Request) -> JSONResponse:
        return await self._serve(request, self._check_verification)

    def _check_verification(self, request: Request, form: dict[str, str]) -> tuple[int, dict]:
        service_sid = self._service(request)
        to, sid, code = form.get("To"), form.get("VerificationSid"), form.get("Code", "")
        if not to and not sid:
            raise _TwilioError(400, 60200, "Invalid parameter: To")
        if not code:
            raise _TwilioError(400, 60200, "Invalid parameter: Code")
        if to:
            self._refuse_if_failing(to)
        verification = next(
            (
                v for v in reversed(self.verifications)
                if v.service_sid == service_sid and v.status == "pending" and (v.to == to or v.sid == sid)
            ),
            None,
        )  # fmt: skip
        if verification is None:
            raise _not_found(request)
        if verification.wrong_checks >= MAX_CHECKS:
            raise _TwilioError(429, 60202, "Max check attempts reached")
        if hmac.compare_digest(code, verification.code):
            verification.status = "approved"
        else:
            verification.wrong_checks += 1
        self.checks.append(Check(verification.to, code, verification.status))
        return 200, self._verification_json(verification, check=True)


# --- Twilio calling our webhooks ----------------------------------------------------------------


def sign(url: str, params: dict[str, str], auth_token: str = AUTH_TOKEN) -> str:
    """The X-Twilio-Signature Twilio sends with a webhook to `url`."""
    return RequestValidator(auth_token).compute_signature(url, params)


def whatsapp_form(text: str, sender: str, message_sid: str | None = None, **more: str) -> dict[str, str]:
    """The parameters of Twilio's webhook for a WhatsApp message from `sender` (E.164), with a
    fresh MessageSid unless one is given; `more` adds or replaces any (NumMedia, ButtonPayload)."""
    sid = message_sid or _sid("SM")
    return {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": "Ananya", "MessageType": "text",
        "SmsSid": sid, "WaId": sender.lstrip("+"), "SmsStatus": "received", "Body": text,
        "To": WHATSAPP_FROM, "NumSegments": "1", "ReferralNumMedia": "0", "MessageSid": sid,
        "AccountSid": ACCOUNT_SID, "From": f"whatsapp:{sender}", "ApiVersion": "2010-04-01", **more,
    }  # fmt: skip


async def post_whatsapp(
    http: httpx.AsyncClient,
    text: str,
    sender: str,
    public_base_url: str,
    message_sid: str | None = None,
    signature: str | None = None,
    **more: str,
) -> httpx.Response:
    """Post a relative's WhatsApp message to the app as Twilio does: form-encoded, signed for
    the URL Twilio was given (`public_base_url` + the webhook's path), whatever URL `http`
    reaches the app at. `signature` replaces the right one (None: sign)."""
    form = whatsapp_form(text, sender, message_sid, **more)
    return await _post_signed(http, WHATSAPP_WEBHOOK_PATH, form, public_base_url, signature)


async def post_status(
    http: httpx.AsyncClient,
    message: Message,
    status: str,
    public_base_url: str,
    error_code: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """Report `message`'s delivery to the app as Twilio does, signed for its status callback URL
    (`public_base_url` + the callback's path); `signature` replaces the right one."""
    form = {
        "MessageSid": message.sid, "SmsSid": message.sid, "MessageStatus": status, "SmsStatus": status,
        "AccountSid": ACCOUNT_SID, "From": message.from_ or "", "To": message.to, "ApiVersion": "2010-04-01",
        "ChannelPrefix": "whatsapp", "ChannelToAddress": message.to.removeprefix("whatsapp:"),
    }  # fmt: skip
    if error_code is not None:
        form["ErrorCode"] = str(error_code)
    return await _post_signed(http, STATUS_CALLBACK_PATH, form, public_base_url, signature)


async def _post_signed(
    http: httpx.AsyncClient, path: str, form: dict[str, str], public_base_url: str, signature: str | None
) -> httpx.Response:
    """Post `form` to `path` with the signature for `public_base_url` + `path` (or `signature`)."""
    header = sign(public_base_url.rstrip("/") + path, form) if signature is None else signature
    headers = {"X-Twilio-Signature": header} if header else {}
    return await http.post(path, data=form, headers=headers)
