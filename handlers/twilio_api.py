"""Twilio: the client on its async HTTP client, and the code providers on it. Twilio SMS delivers
our own codes (`bot.relatives.otp.CodeSender`); Twilio Verify makes, sends and checks its own
(`bot.relatives.otp.CodeVerifier`).

A code is sent in the background after the reply (`bot.relatives.otp`), so a failed send cannot be told to
anybody: it is logged here, with the number masked and without the text, and goes no further.
"""

from __future__ import annotations

import logging

from aiohttp import ClientError, ClientSession, ClientTimeout, encode_basic_auth
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client as TwilioClient

from bot.platform.health import OUTSIDE_SERVICES, TWILIO
from bot.platform.logs import mask_phones
from bot.platform.metrics import CODE_FAILED, CODE_SENT, Metrics
from bot.platform.phones import mask
from bot.relatives.otp import CheckUnavailable

log = logging.getLogger(__name__)

# Twilio answers in well under a second; a hung connection must not hold a send (nor shutdown,
# which waits for the sends under way) for aiohttp's default of five minutes.
TWILIO_TIMEOUT_SECONDS = 15.0

# Twilio's error answers (the classic JSON error, or RFC 9457 problem details); both carry
# `status` and `code`.
TWILIO_ERRORS = (TwilioRestException, TwilioServiceException)
# What a failed request can raise: Twilio's answer, or no answer at all.
SEND_ERRORS = (TwilioException, ClientError, TimeoutError)


class _AsyncHttpClient(AsyncTwilioHttpClient):
    """Twilio's async HTTP client, its `request` written again with three corrections:

    - its aiohttp session is opened on the first request, in the running event loop: aiohttp
      refuses to make one outside a loop, and `Services.build` runs before the loop starts
      (`python -m bot`);
    - its `timeout` is applied: Twilio's client keeps it but passes each request's own (None:
      no timeout at all) to aiohttp;
    - the account's credentials go in an `Authorization` header: Twilio's client hands aiohttp a
      `BasicAuth` in `auth=`, both deprecated since aiohttp 3.14 and gone in aiohttp 4.
    """

    session: ClientSession | None

    def __init__(self, timeout: float = TWILIO_TIMEOUT_SECONDS) -> None:
        super().__init__(pool_connections=False, timeout=timeout)

    async def request(self, method, url, params=None, data=None, headers=None, auth=None,
                      timeout=None, allow_redirects=False) -> Response:  # fmt: skip
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        if self.session is None or self.session.closed:
            self.session = ClientSession(timeout=ClientTimeout(total=self.timeout))
        if auth is not None:
            headers = {**(headers or {}), "Authorization": encode_basic_auth(*auth)}
        kwargs = {
            "method": method.upper(), "url": url, "params": params, "data": data, "headers": headers,
            "timeout": timeout if timeout is not None else self.timeout, "allow_redirects": allow_redirects,
        }  # fmt: skip
        self.log_request(kwargs)  # Twilio's request log, which leaves out the Authorization header
        try:
            response = await self.session.request(**kwargs)
        except (ClientError, TimeoutError):
            OUTSIDE_SERVICES.failed(TWILIO)
            raise
        # For /readyz: a server error or refused credentials is Twilio failing us; any other answer
        # (a number it will not message, a 429) is Twilio working.
        if response.status >= 500 or response.status == 401:
            OUTSIDE_SERVICES.failed(TWILIO)
        else:
            OUTSIDE_SERVICES.answered(TWILIO)
        self.log_response(response.status, response)
        return Response(response.status, await response.text(), response.headers)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


def twilio_client(account_sid: str, auth_token: str, base_url: str | None) -> TwilioClient:
    """Twilio's client on its async HTTP client, optionally sent to another base URL (a sandbox,
    or the fake Twilio API of the tests). Close it with `await client.http_client.close()`."""
    client = TwilioClient(account_sid, auth_token, http_client=_AsyncHttpClient())
    if base_url:
        client.api.base_url = base_url.rstrip("/")
        client.verify.base_url = base_url.rstrip("/")
    return client


def describe_failure(error: Exception) -> str:
    """One line about a failed Twilio request, with any phone number in it masked."""
    if isinstance(error, TWILIO_ERRORS):
        what = getattr(error, "msg", None) or getattr(error, "detail", None) or getattr(error, "title", "")
        return mask_phones(f"Twilio error {error.code} (HTTP {error.status}): {what}")
    return mask_phones(f"{type(error).__name__}: {error}")


class TwilioSmsCodes:
    """Our own code, sent through the Messages API."""

    owns_codes = False
    provider = "twilio_sms"

    def __init__(
        self,
        client: TwilioClient,
        sender: str | None,
        messaging_service_sid: str | None,
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._sender = {"messaging_service_sid": messaging_service_sid} if messaging_service_sid else {"from_": sender}
        self._metrics = metrics or Metrics()

    async def send(self, mobile: str, body: str) -> None:
        try:
            message = await self._client.messages.create_async(to=mobile, body=body, **self._sender)
        except SEND_ERRORS as error:
            self._metrics.code(self.provider, CODE_FAILED)
            log.warning("SMS code to %s not sent: %s", mask(mobile), describe_failure(error))
            return
        self._metrics.code(self.provider, CODE_SENT)
        log.info("SMS code to %s accepted by Twilio as %s (%s)", mask(mobile), message.sid, message.status)


class TwilioVerifyCodes:
    """Twilio Verify v2 makes, sends and checks the code; our limits still apply before it."""

    owns_codes = True
    provider = "twilio_verify"

    def __init__(self, client: TwilioClient, service_sid: str, metrics: Metrics | None = None) -> None:
        self._service = client.verify.v2.services(service_sid)
        self._metrics = metrics or Metrics()

    async def start(self, mobile: str, locale: str) -> None:
        try:
            try:
                await self._service.verifications.create_async(to=mobile, channel="sms", locale=locale)
            except TWILIO_ERRORS as error:
                # Verify answers 404 to a locale it has no translation for, and advises asking
                # again without one: the message then follows the number's country, or English.
                if error.status != 404:
                    raise
                log.warning("Twilio Verify refused locale %r (%s); sending without it", locale, describe_failure(error))
                await self._service.verifications.create_async(to=mobile, channel="sms")
        except SEND_ERRORS as error:
            self._metrics.code(self.provider, CODE_FAILED)
            log.warning("Verify code to %s not sent: %s", mask(mobile), describe_failure(error))
            return
        self._metrics.code(self.provider, CODE_SENT)
        log.info("Verify code to %s started", mask(mobile))

    async def check(self, mobile: str, code: str) -> bool:
        try:
            result = await self._service.verification_checks.create_async(to=mobile, code=code)
        except TWILIO_ERRORS as error:
            # 404: no pending verification any more (expired, approved, or cancelled at Twilio);
            # 60202: Twilio's own limit of checks. Either way the code is not accepted.
            if error.status == 404 or error.code == 60202:
                log.info("Verify check for %s not accepted: %s", mask(mobile), describe_failure(error))
                return False
            log.warning("Verify check for %s failed: %s", mask(mobile), describe_failure(error))
            raise CheckUnavailable from None
        except SEND_ERRORS as error:
            log.warning("Verify check for %s failed: %s", mask(mobile), describe_failure(error))
            raise CheckUnavailable from None
        return result.status == "approved"
