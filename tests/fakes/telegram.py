"""A fake Telegram Bot API on 127.0.0.1, for driving the real python-telegram-bot stack in tests.

    async with FakeTelegram(token) as fake:          # uvicorn on a free port
        settings: TELEGRAM_API_BASE_URL = f"{fake.url}/bot"
        user = fake.user(language_code="bn")
        await fake.push(fake.updates.command(user, "/start"))   # getUpdates returns it
        [reply] = await fake.wait_messages(user.id, 1)

Every method is served at `/bot<token>/<method>`, with JSON, form-encoded or multipart bodies
(PTB sends form-encoded fields, JSON-encoding the structured ones such as `reply_markup`).
The answers follow the Bot API: `{"ok": true, "result": ...}`, or `{"ok": false, "error_code",
"description"}` with the descriptions Telegram uses, so PTB raises its real exceptions.

It is strict where Telegram is and where a bot usually goes wrong:
- `sendMessage` checks the text the way Telegram's HTML parse mode does: only Telegram's tags,
  properly nested; every `<` and `&` must be part of a tag or an entity (`&lt;`, `&amp;`, ...),
  as the Bot API documentation requires, otherwise 400 "Bad Request: can't parse entities";
  at most 4096 characters after entities are parsed; not empty; the chat must have talked to
  the bot; inline buttons need callback data of 1-64 bytes. Refused calls are kept in `rejected`.
- `getUpdates` long-polls (held until an update is pushed or `timeout` passes), returns the
  updates from `offset` on and forgets those below it (Telegram's confirmation), answers 409
  while a webhook is set, and ends an older request with 409 when a newer one arrives (two bot
  instances polling at once).
- `answerCallbackQuery` only accepts the id of a pushed, unanswered, unexpired button press.
- `setWebhook` needs an https URL and a secret token of 1-256 characters `A-Z a-z 0-9 _ -`.

Telegram's refusals of `sendMessage`, all off unless a test asks (`throttled` and `attempts` keep
what happened; refused calls are in `rejected` too):
- `limits=True`: more than `per_chat_per_second` messages to one chat, or `overall_per_second` in
  all, within any second (a sliding window over the messages accepted) gets 429 "Too Many
  Requests: retry after N" with `parameters.retry_after` N, the whole seconds until the window
  has room again.
- `blocked` chats get 403 "Forbidden: bot was blocked by the user"; `gone` chats (and any chat
  that never wrote to the bot) 400 "Bad Request: chat not found".
- `error_rate`: that share of the calls, drawn from `random.Random(seed)`, gets 500.
- `fail_next(chat_id, code, count, retry_after)`: the next `count` calls to that chat (or to any
  chat with None) get that error: 429 with `retry_after`, 403, 400 or 5xx.
A refused message is not delivered and does not count in the windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT_ID = 7000001
BOT_USERNAME = "WardWatchBot"
MAX_TEXT_LENGTH = 4096
# Form fields that carry JSON (PTB encodes structured parameters as JSON strings).
_JSON_FIELDS = {
    "reply_markup", "allowed_updates", "entities", "caption_entities", "commands", "scope",
    "link_preview_options", "reply_parameters", "media", "results",
}  # fmt: skip
_ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
_BOLD_TAGS = {"b", "strong"}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)\s*>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


BLOCKED = "Forbidden: bot was blocked by the user"
_SCRIPTED = {
    400: "Bad Request: chat not found",
    403: BLOCKED,
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# --- Telegram's HTML parse mode ---------------------------------------------------------------


@dataclass(frozen=True)
class ParsedText:
    plain: str  # what the user reads
    bold: tuple[str, ...]  # the text of every <b>/<strong> element


def parse_html(text: str) -> ParsedText:
    """Parse like Telegram's HTML mode, or raise 400 "can't parse entities"."""
    plain: list[str] = []
    stack: list[tuple[str, int]] = []  # open tag, length of `plain` when it opened
    bold: list[str] = []
    i = 0

    def refuse(reason: str) -> ApiError:
        return bad_request(f"can't parse entities: {reason} at byte offset {len(text[:i].encode())}")

    while i < len(text):
        char = text[i]
        if char == "&":
            match = _ENTITY.match(text, i)
            if match is None:
                raise refuse('character "&" must be part of an HTML entity, write &amp;')
            name = match.group(1)
            if name in _NAMED:
                plain.append(_NAMED[name])
            else:
                number = int(name[2:], 16) if name.startswith("#x") else int(name[1:])
                try:
                    plain.append(chr(number))
                except (ValueError, OverflowError):
                    raise refuse("invalid numeric entity") from None
            i = match.end()
        elif char == "<":
            match = _TAG.match(text, i)
            if match is None:
                raise refuse('character "<" must start a tag, write &lt;')
            closing, name, attributes = match.group(1) == "/", match.group(2).lower(), match.group(3)
            if name not in _ALLOWED_TAGS:
                raise refuse(f'unsupported {"end" if closing else "start"} tag "{name}"')
            if closing:
                if not stack:
                    raise refuse(f'unexpected end tag "{name}"')
                opened, start = stack.pop()
                if opened != name:
                    raise refuse(f'unmatched end tag, expected "</{opened}>", found "</{name}>"')
                if name in _BOLD_TAGS:
                    bold.append("".join(plain[start:]))
            else:
                if name == "a" and "href=" not in attributes:
                    raise refuse('tag "a" needs an href attribute')
                if name == "span" and "tg-spoiler" not in attributes:
                    raise refuse('tag "span" must have class "tg-spoiler"')
                stack.append((name, len(plain)))
            i = match.end()
        else:
            plain.append(char)
            i += 1
    if stack:
        raise refuse(f'can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return ParsedText("".join(plain), tuple(bold))


def check_text(text: Any, parse_mode: str | None) -> ParsedText:
    if not isinstance(text, str) or not text.strip():
        raise bad_request("message text is empty")
    parsed = parse_html(text) if (parse_mode or "").upper() == "HTML" else ParsedText(text, ())
    if not parsed.plain.strip():
        raise bad_request("message text is empty")
    if len(parsed.plain) > MAX_TEXT_LENGTH:
        raise bad_request("message is too long")
    return parsed


def check_reply_markup(markup: Any) -> None:
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        for row in markup["inline_keyboard"]:
            for button in row:
                if not str(button.get("text", "")).strip():
                    raise bad_request("BUTTON_TEXT_INVALID")
                data = button.get("callback_data")
                actions = [key for key in button if key != "text"]
                if len(actions) != 1:
                    raise bad_request("can't parse inline keyboard button: exactly one action is needed")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise bad_request("BUTTON_DATA_INVALID")
    elif "keyboard" in markup:
        for row in markup["keyboard"]:
            for button in row:
                label = button if isinstance(button, str) else button.get("text", "")
                if not str(label).strip():
                    raise bad_request("BUTTON_TEXT_INVALID")
    elif markup.get("remove_keyboard") is not True and markup.get("force_reply") is not True:
        raise bad_request("can't parse reply keyboard markup JSON object")


# --- what the fake records ----------------------------------------------------------------------


@dataclass(frozen=True)
class SentMessage:
    chat_id: int
    message_id: int
    text: str  # exactly as the bot sent it (HTML)
    plain: str  # as the user reads it
    bold: tuple[str, ...]
    parse_mode: str | None
    reply_markup: dict | None
    json: dict  # the Message object returned to the bot, reusable in a callback_query
    at: float = 0.0  # the fake's clock when it was accepted

    @property
    def inline_buttons(self) -> list[tuple[str, str]]:
        """(label, callback data) of every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(button["text"], button.get("callback_data")) for row in rows for button in row]

    @property
    def keyboard_buttons(self) -> list[dict]:
        rows = (self.reply_markup or {}).get("keyboard", [])
        return [button if isinstance(button, dict) else {"text": button} for row in rows for button in row]


@dataclass(frozen=True)
class FakeUser:
    id: int
    first_name: str
    language_code: str | None = None
    last_name: str | None = None

    def json(self) -> dict:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def private_chat(self) -> dict:
        return {"id": self.id, "type": "private", "first_name": self.first_name}


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class UpdateFactory:
    """Realistic update JSON, as Telegram sends it for a private chat with the bot."""

    def __init__(self, fake: FakeTelegram) -> None:
        self._fake = fake
        self._update_ids = itertools.count(500_000_001)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(1)

    def _message(self, user: FakeUser, **content: Any) -> dict:
        self._fake.known_chats.add(user.id)
        message = {
            "message_id": next(self._message_ids),
            "from": user.json(),
            "chat": user.private_chat(),
            "date": int(time.time()),
            **content,
        }
        return {"update_id": next(self._update_ids), "message": message}

    def text(self, user: FakeUser, text: str) -> dict:
        return self._message(user, text=text)

    def command(self, user: FakeUser, text: str) -> dict:
        """`/start`, `/status@WardWatchBot`, `/start payload`: a bot_command entity at offset 0."""
        assert text.startswith("/")
        token = text.split()[0]
        entity = {"type": "bot_command", "offset": 0, "length": _utf16_length(token)}
        return self._message(user, text=text, entities=[entity])

    def contact(self, user: FakeUser, phone_number: str, user_id: int | None, first_name: str = "Contact") -> dict:
        """A shared contact card; `user_id` is the Telegram user it belongs to (None: not on Telegram)."""
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
        if user_id is not None:
            contact["user_id"] = user_id
        return self._message(user, contact=contact)

    def sticker(self, user: FakeUser) -> dict:
        sticker = {
            "file_id": "CAACAgIAAxkBAAEBsticker", "file_unique_id": "AgADsticker", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "🙏",
        }  # fmt: skip
        return self._message(user, sticker=sticker)

    def photo(self, user: FakeUser, caption: str | None = None) -> dict:
        sizes = [
            {"file_id": f"AgACAgUAAxkBAAEBphoto{w}", "file_unique_id": f"AQADphoto{w}", "width": w,
             "height": w * 3 // 4, "file_size": w * 40}
            for w in (90, 320, 800)
        ]  # fmt: skip
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        return self._message(user, **content)

    def callback(self, user: FakeUser, data: str, message: SentMessage | dict, expired: bool = False) -> dict:
        """A press on an inline button of `message` (a message the bot sent). An `expired` query
        is refused by answerCallbackQuery, as Telegram does for presses it stopped waiting for."""
        self._fake.known_chats.add(user.id)
        query_id = f"{user.id}{next(self._query_ids):06d}"
        if not expired:
            self._fake.open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": user.json(),
            "chat_instance": f"-{user.id}42",
            "data": data,
            "message": message.json if isinstance(message, SentMessage) else message,
        }
        return {"update_id": next(self._update_ids), "callback_query": query}


# --- the server ---------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the test runner owns the signals
        yield


@dataclass
class Webhook:
    url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] | None = None


@dataclass
class FakeTelegram:
    token: str
    bot_id: int = BOT_ID
    username: str = BOT_USERNAME
    url: str = ""
    calls: list[tuple[str, dict]] = field(default_factory=list)
    sent: list[SentMessage] = field(default_factory=list)
    rejected: list[tuple[str, dict, str]] = field(default_factory=list)
    callback_answers: list[dict] = field(default_factory=list)
    webhook: Webhook = field(default_factory=Webhook)
    webhook_history: list[Webhook] = field(default_factory=list)
    commands: dict[str, list[dict]] = field(default_factory=dict)  # by language_code, "" = default
    known_chats: set[int] = field(default_factory=set)
    open_queries: set[str] = field(default_factory=set)
    # Telegram's refusals of sendMessage (see the module's docstring); all off by default.
    limits: bool = False
    per_chat_per_second: int = 1
    overall_per_second: int = 30
    blocked: set[int] = field(default_factory=set)
    gone: set[int] = field(default_factory=set)
    error_rate: float = 0.0
    seed: int = 0
    # What sendMessage's windows and records go by, in seconds: a test may hold it and move it.
    clock: Callable[[], float] = time.monotonic
    # Every 429 given: (clock(), chat_id, "chat", "overall" or "injected").
    throttled: list[tuple[float, int | None, str]] = field(default_factory=list)
    # Every sendMessage call: (clock(), chat_id, HTTP status answered).
    attempts: list[tuple[float, int | None, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.updates = UpdateFactory(self)
        self._random = random.Random(self.seed)
        self._scripted: dict[int | None, deque[tuple[int, int]]] = {}
        self._window_all: deque[float] = deque()  # accepted in the last second
        self._window_chat: dict[int, deque[float]] = {}
        self._window_chats_max = 10_000
        self._queue: list[dict] = []
        self._confirmed = 0
        self._poll_generation = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._user_ids = itertools.count(100_000_001)
        self._message_ids = itertools.count(10_001)
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])])

    # --- lifecycle

    async def __aenter__(self) -> FakeTelegram:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it every answer waited ~40 ms for a delayed ACK
        # (uvicorn sets no TCP_NODELAY on sockets handed to it), capping any benchmark at ~25/s
        # per connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the fake Bot API stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Bot API did not start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._closing = True
        async with self._changed:
            self._changed.notify_all()  # long polls answer at once
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    # --- what tests use

    def user(self, language_code: str | None = "en", first_name: str = "Ananya") -> FakeUser:
        return FakeUser(next(self._user_ids), first_name, language_code)

    async def push(self, update: dict) -> None:
        """Queue an update for getUpdates (polling mode); a waiting long poll returns it at once."""
        async with self._changed:
            self._queue.append(update)
            self._changed.notify_all()

    @property
    def pending_updates(self) -> list[dict]:
        return [u for u in self._queue if u["update_id"] >= self._confirmed]

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [message for message in self.sent if message.chat_id == chat_id]

    async def wait_messages(self, chat_id: int, count: int, timeout: float = 10) -> list[SentMessage]:
        """Wait until at least `count` messages were sent to `chat_id`; return them all."""

        def enough() -> bool:
            return len(self.messages_to(chat_id)) >= count

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(enough), timeout)
            except TimeoutError:
                got = [m.plain for m in self.messages_to(chat_id)]
                raise AssertionError(
                    f"expected {count} messages to chat {chat_id} within {timeout}s, got {len(got)}: {got}"
                    + (f"; refused: {self.rejected}" if self.rejected else "")
                ) from None
        return self.messages_to(chat_id)

    def called(self, method: str) -> list[dict]:
        return [params for name, params in self.calls if name == method.lower()]

    def fail_next(self, chat_id: int | None, code: int, count: int = 1, retry_after: int = 1) -> None:
        """The next `count` sendMessage calls to `chat_id` (None: to any chat) get `code`."""
        assert code == 429 or code in _SCRIPTED, code
        self._scripted.setdefault(chat_id, deque()).extend([(code, retry_after)] * count)

    @property
    def too_many_requests(self) -> int:
        """How many 429s were given, for whatever reason."""
        return len(self.throttled)

    def attempts_to(self, chat_id: int) -> list[tuple[float, int]]:
        """(time, HTTP status) of every sendMessage call to `chat_id`."""
        return [(at, status) for at, chat, status in self.attempts if chat == chat_id]

    # --- HTTP

    async def _endpoint(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        method = request.path_params["method"].lower()
        try:
            params = await self._params(request)
        except ValueError as error:
            return self._error(method, {}, bad_request(f"can't parse request: {error}"))
        self.calls.append((method, params))
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self._error(method, params, ApiError(404, "Not Found: method not found"))
        try:
            result = await handler(params)
        except ApiError as error:
            return self._error(method, params, error)
        return JSONResponse({"ok": True, "result": result})

    def _error(self, method: str, params: dict, error: ApiError) -> JSONResponse:
        if error.code != 409:  # a superseded long poll is not the bot's mistake
            self.rejected.append((method, params, error.description))
        body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
        if error.parameters:
            body["parameters"] = error.parameters
        return JSONResponse(body, error.code)

    @staticmethod
    async def _params(request: Request) -> dict:
        params: dict[str, Any] = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body = await request.body()
            if body:
                decoded = json.loads(body)
                if not isinstance(decoded, dict):
                    raise ValueError("the body must be a JSON object")
                params.update(decoded)
            return params
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            for key, value in form.multi_items():
                params[key] = value if isinstance(value, str) else await value.read()
        for key in _JSON_FIELDS & params.keys():
            if isinstance(params[key], (str, bytes)):
                params[key] = json.loads(params[key])
        return params

    @staticmethod
    def _int(params: dict, name: str, default: int | None = None) -> int | None:
        value = params.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be an integer') from None

    # --- methods

    def _bot_user(self) -> dict:
        return {
            "id": self.bot_id, "is_bot": True, "first_name": "Ward Watch", "username": self.username,
            "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }  # fmt: skip

    async def _api_getme(self, params: dict) -> dict:
        return self._bot_user()

    async def _api_getupdates(self, params: dict) -> list[dict]:
        if self.webhook.url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")  # fmt: skip
        offset = self._int(params, "offset", 0)
        limit = self._int(params, "limit", 100)
        timeout = float(params.get("timeout") or 0)
        if offset > 0:
            self._confirmed = max(self._confirmed, offset)
            self._queue = [u for u in self._queue if u["update_id"] >= self._confirmed]
        self._poll_generation += 1
        generation = self._poll_generation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            self._changed.notify_all()  # an older long poll ends with 409
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                                        "make sure that only one bot instance is running")  # fmt: skip
                ready = self.pending_updates
                remaining = deadline - loop.time()
                if ready or self._closing or remaining <= 0:
                    return ready[:limit]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def _refuse(self, chat_id: int | None, now: float) -> None:
        """Telegram's refusals other than a bad message (see the module's docstring)."""
        if chat_id is None or chat_id not in self.known_chats or chat_id in self.gone:
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, BLOCKED)
        for key in (chat_id, None):
            script = self._scripted.get(key)
            if script:
                code, retry_after = script.popleft()
                if code == 429:
                    self.throttled.append((now, chat_id, "injected"))
                    raise too_many_requests(retry_after)
                raise ApiError(code, _SCRIPTED[code])
        if self.limits:
            chat_window = self._window_chat.get(chat_id, deque())
            for window in (self._window_all, chat_window):
                while window and window[0] <= now - 1.0:
                    window.popleft()
            for window, limit, why in (
                (chat_window, self.per_chat_per_second, "chat"),
                (self._window_all, self.overall_per_second, "overall"),
            ):
                if len(window) >= limit:
                    self.throttled.append((now, chat_id, why))
                    raise too_many_requests(max(1, math.ceil(window[0] + 1.0 - now)))
        if self.error_rate and self._random.random() < self.error_rate:
            raise ApiError(500, _SCRIPTED[500])

    async def _api_sendmessage(self, params: dict) -> dict:
        now = self.clock()
        chat_id = None
        try:
            chat_id = self._int(params, "chat_id")
            self._refuse(chat_id, now)
            sent = self._accept(chat_id, params, now)
        except ApiError as error:
            self.attempts.append((now, chat_id, error.code))
            raise
        self.attempts.append((now, chat_id, 200))
        async with self._changed:
            self.sent.append(sent)
            self._changed.notify_all()
        return sent.json

    def _accept(self, chat_id: int, params: dict, now: float) -> SentMessage:
        parse_mode = params.get("parse_mode")
        parsed = check_text(params.get("text"), parse_mode)
        markup = params.get("reply_markup")
        check_reply_markup(markup)
        # Counted now, before anything awaits, so that no other call slips into the window unseen.
        for window in (self._window_all, self._window_chat.setdefault(chat_id, deque())):
            window.append(now)
            while window[0] <= now - 1.0:
                window.popleft()
        if len(self._window_chat) > self._window_chats_max:  # forget chats quiet for a second
            self._window_chat = {chat: w for chat, w in self._window_chat.items() if w[-1] > now - 1.0}
            self._window_chats_max = max(10_000, 2 * len(self._window_chat))
        message_id = next(self._message_ids)
        message = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": {"id": chat_id, "type": "private", "first_name": "Relative"},
            "date": int(time.time()),
            "text": parsed.plain,
        }
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return SentMessage(
            chat_id, message_id, params["text"], parsed.plain, parsed.bold, parse_mode, markup, message, now
        )

    async def _api_answercallbackquery(self, params: dict) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self.open_queries:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        self.open_queries.discard(query_id)
        self.callback_answers.append(params)
        return True

    async def _api_setwebhook(self, params: dict) -> bool:
        url = str(params.get("url") or "")
        if url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
            raise bad_request("secret token contains unallowed characters")
        self.webhook = Webhook(url, secret, params.get("allowed_updates"))
        self.webhook_history.append(self.webhook)
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self._queue.clear()
        return True

    async def _api_deletewebhook(self, params: dict) -> bool:
        self.webhook = Webhook()
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self._queue.clear()
        return True

    async def _api_getwebhookinfo(self, params: dict) -> dict:
        info: dict[str, Any] = {
            "url": self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending_updates),
        }
        if self.webhook.allowed_updates is not None:
            info["allowed_updates"] = self.webhook.allowed_updates
        return info

    async def _api_setmycommands(self, params: dict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        self.commands[params.get("language_code") or ""] = commands
        return True

    async def _api_getmycommands(self, params: dict) -> list[dict]:
        return self.commands.get(params.get("language_code") or "", [])

    async def _api_deletemycommands(self, params: dict) -> bool:
        self.commands.pop(params.get("language_code") or "", None)
        return True

    async def _api_close(self, params: dict) -> bool:
        return True

    async def _api_logout(self, params: dict) -> bool:
        return True
