"""Code providers: the terminal and Twilio SMS deliver our own codes (`bot.otp.CodeSender`);
Twilio Verify makes, sends and checks its own (`bot.otp.CodeVerifier`)."""

from __future__ import annotations

from typing import Callable

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

class ConsoleCodes:
    """Local use: the "SMS" is printed where the person at the terminal can read it."""

    owns_codes = False

    def __init__(self, show: Callable[[str], None] = print) -> None:
        self._show = show

    async def send(self, mobile: str, body: str) -> None:
        self._show(f"[SMS to {mobile}] {body}")


def twilio_client(account_sid: str, auth_token: str, base_url: str | None) -> Client:
    """Twilio's client on its async HTTP client, optionally sent to another base URL (a sandbox,
    or the fake Twilio API of the tests)."""
    client = Client(account_sid, auth_token, http_client=AsyncTwilioHttpClient())
    if base_url:
        client.api.base_url = base_url.rstrip("/")
        client.verify.base_url = base_url.rstrip("/")
    return client


class TwilioSmsCodes:
    """Our own code, sent through the Messages API."""

    owns_codes = False

    def __init__(self, client: Client, sender: str | None, messaging_service_sid: str | None) -> None:
        self._client = client
        self._sender = (
            {"messaging_service_sid": messaging_service_sid} if messaging_service_sid else {"from_": sender}
        )

    async def send(self, mobile: str, body: str) -> None:
        await self._client.messages.create_async(to=mobile, body=body, **self._sender)


class TwilioVerifyCodes:
    """Twilio Verify v2 makes, sends and checks the code; our limits still apply before it."""

    owns_codes = True

    def __init__(self, client: Client, service_sid: str) -> None:
        self._service = client.verify.v2.services(service_sid)

    async def start(self, mobile: str, locale: str) -> None:
        await self._service.verifications.create_async(to=mobile, channel="sms", locale=locale)

    async def check(self, mobile: str, code: str) -> bool:
        result = await self._service.verification_checks.create_async(to=mobile, code=code)
        return result.status == "approved"
