"""HTTP plumbing shared by the providers: one pooled client per event loop, retries, SSE parsing."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import anyio
import httpx

from ..._loops import PerLoop
from .base import (
    CallContext,
    Finish,
    ModelError,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)

TRANSIENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """How one provider talks HTTP: where, with which credentials, how patiently."""

    provider: str
    base_url: str
    headers: dict[str, str]
    timeout_s: float = 120.0
    max_retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0  # a server asking for a longer wait gets an error instead
    auth_hint: str = ""


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    return httpx.AsyncClient(limits=limits, timeout=None)


_clients = PerLoop(_new_client)


def shared_client() -> httpx.AsyncClient:
    """A client per event loop, so connections are reused but never cross loops."""
    client = _clients.get_current()
    if client.is_closed:
        client = _clients[asyncio.get_running_loop()] = _new_client()
    return client


def retry_delay(attempt: int, retry_after_s: float | None, options: HttpOptions) -> float:
    """The server's Retry-After when it gave one, else exponential backoff with equal jitter."""
    if retry_after_s is not None:
        return retry_after_s
    ceiling = min(options.max_backoff_s, options.backoff_s * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, which is a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # not a date either: fall back to backoff rather than fail the call
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def status_error(options: HttpOptions, response: httpx.Response) -> ModelError:
    """A refused call (4xx, 5xx), a redirect, or a 2xx that is not a stream, explained."""
    status = response.status_code
    if response.is_redirect:
        where = response.headers.get("location", "elsewhere")
        return ModelError(options.provider, f"{response.request.url} redirects to {where}: use that as the base URL")
    if response.is_success:
        kind = response.headers.get("content-type", "no content type")
        detail = f"expected a text/event-stream answer from {response.request.url}, got {kind}"
        return ModelError(options.provider, f"{detail}: {response.text.strip()[:200]!r}; does the server stream?")
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    detail = _error_detail(response)
    message = f"{reason} from {response.request.url}" + (f": {detail}" if detail else "")
    if status in (401, 403) and options.auth_hint:
        message += f". {options.auth_hint}"
    wait = parse_retry_after(response.headers.get("retry-after"))
    return ModelError(options.provider, message, status=status, retry_after_s=wait)


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:300]
    return error_message(body.get("error", body) if isinstance(body, dict) else body)


def error_message(error: Any) -> str:
    """The readable part of a provider's error object, which is usually {"message": ..., "type": ...}."""
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error)[:300]


def _transport_error(options: HttpOptions, exc: Exception, *, streaming: bool = False) -> ModelError:
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
    if kind == "timeout":
        what = f"no response within {options.timeout_s:g} s from {options.base_url}"
        what += "; raise timeout_s or check the server"
    elif streaming:
        what = f"the connection to {options.base_url} broke during the answer ({type(exc).__name__}: {exc})"
    else:
        what = f"cannot reach {options.base_url} ({type(exc).__name__}: {exc}); check the URL and that the server runs"
    return ModelError(options.provider, what, kind=kind)


@asynccontextmanager
async def open_stream(options: HttpOptions, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
    """POST once and hand back a streaming 2xx response; anything else is a ModelError (retries are the caller's)."""
    client = shared_client()
    url = options.base_url.rstrip("/") + path
    timeout = httpx.Timeout(options.timeout_s, connect=min(options.timeout_s, 15.0))
    try:
        request = client.build_request("POST", url, headers=options.headers, json=body, timeout=timeout)
        response = await client.send(request, stream=True)
    except (httpx.TimeoutException, *TRANSIENT_ERRORS) as exc:
        raise _transport_error(options, exc) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        fix = "the base URL must start with http:// or https://"
        raise ModelError(options.provider, f"cannot call {url!r} ({exc}): {fix}") from exc
    try:
        if not (response.is_success and _is_event_stream(response)):
            try:
                await response.aread()
            except (httpx.TimeoutException, *TRANSIENT_ERRORS) as exc:
                raise _transport_error(options, exc) from exc
            raise status_error(options, response)
        yield response
    finally:
        await response.aclose()


async def sse_events(options: HttpOptions, response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as (event name, data) pairs; transport failures mid-stream become ModelError.

    Comment lines (`: OPENROUTER PROCESSING`) and events without data are skipped, as the SSE spec says.
    """
    event, data = "message", list[str]()
    try:
        async for line in response.aiter_lines():
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                event = line[6:].strip()
        if data:
            yield event, "\n".join(data)
    except (httpx.TimeoutException, *TRANSIENT_ERRORS) as exc:
        raise _transport_error(options, exc, streaming=True) from exc


def parse_json(options: HttpOptions, data: str) -> dict[str, Any]:
    """One stream event: always a JSON object, or the stream is not what the provider should send."""
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelError(options.provider, f"malformed stream event {data[:120]!r}: {exc}") from exc
    if not isinstance(event, dict):
        raise ModelError(options.provider, f"malformed stream event {data[:120]!r}: expected a JSON object")
    return event


def stream_error(options: HttpOptions, error: Any) -> ModelError:
    """An error reported inside a 2xx stream, classified for retry like an HTTP error.

    OpenAI sends `{"type": "server_error"}`, Anthropic `{"type": "overloaded_error"}`, OpenRouter
    `{"code": 502}` or `{"code": "server_error"}`; whichever names the kind goes into the message.
    """
    fields = error if isinstance(error, dict) else {}
    code = fields.get("code")
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    named = fields.get("type") or (code if status is None else None)
    kind = str(named) if named else None  # a gateway's odd value (a list, an object) is named, not retried
    label = kind or status
    message = "error in the response stream" + (f" ({label})" if label else "") + f": {error_message(error)}"
    return ModelError(options.provider, message, status=status, kind=kind)


def env_setting(value: str | None, env_var: str, default: str = "") -> str:
    """An explicit argument wins over the environment, which wins over the provider's default."""
    return value if value is not None else os.environ.get(env_var) or default


def require_api_key(options: HttpOptions, api_key: str, env_var: str, default_url: str) -> None:
    """The provider's own host needs a key; a custom base URL (a proxy, a local server) may need none."""
    if not api_key and httpx.URL(options.base_url).host == httpx.URL(default_url).host:
        fix = f"export {env_var}=<your key>, or pass api_key= to the model"
        raise ModelError(options.provider, f"{env_var} is not set: {fix}")


class StreamReader(Protocol):
    """One provider's stream format: it turns each SSE data payload into model events."""

    ended: bool  # the provider's end-of-stream marker arrived
    raw_reason: str | None  # the provider's own finish reason, once it said one

    def read(self, data: str) -> Iterable[ModelEvent]: ...

    def finish(self) -> Iterable[ModelEvent]:
        """What the reader held back until the stream was over, then the one Finish."""
        ...


async def stream_model(
    options: HttpOptions, path: str, body: dict[str, Any], new_reader: Callable[[], StreamReader]
) -> AsyncIterator[ModelEvent]:
    """POST a streaming request and yield its events, ending with exactly one Finish.

    A failure before the model's first event is retried, whether the server refused the request,
    the connection broke, or the stream reported an error event before any content: the caller has
    seen nothing yet. After the first event, a failure ends the stream with a ModelError instead of
    showing the caller the same answer twice.
    """
    attempt = 0
    while True:
        shown = False
        try:
            async with aclosing(_attempt(options, path, body, new_reader())) as events:
                async for event in events:
                    shown = True
                    yield event
            return
        except ModelError as error:
            if shown:
                raise
            await anyio.sleep(_retry_wait(error, attempt, options))
        attempt += 1


def _retry_wait(error: ModelError, attempt: int, options: HttpOptions) -> float:
    """How long to wait before the next attempt, or the error itself when there is to be none."""
    wait = retry_delay(attempt, error.retry_after_s, options)
    too_long = wait > options.max_retry_after_s
    if error.retryable and attempt < options.max_retries and not too_long:
        return wait
    if attempt:
        error.args = (f"{error.args[0]} (after {attempt + 1} attempts)",)
    if too_long and error.retryable:
        error.args = (f"{error.args[0]}; the server asked to wait {wait:.0f} s before retrying",)
    raise error


async def _attempt(
    options: HttpOptions, path: str, body: dict[str, Any], reader: StreamReader
) -> AsyncGenerator[ModelEvent]:
    chars = WholeChars()
    try:
        async with open_stream(options, path, body) as response:
            async for _, data in sse_events(options, response):
                for event in chars.filter(_read(options, reader, data)):
                    yield event
                if reader.ended:
                    break
        if not (reader.ended or reader.raw_reason):
            stopped = "the response stream stopped before the model finished"
            raise ModelError(options.provider, stopped, kind="connection_error")
        for event in chars.filter(reader.finish()):
            yield event
    except ModelError:
        raise
    except Exception as exc:  # a reader's surprise at a stream it did not expect
        what = f"could not read the response stream ({type(exc).__name__}: {exc})"
        raise ModelError(options.provider, what) from exc


def _read(options: HttpOptions, reader: StreamReader, data: str) -> Iterable[ModelEvent]:
    """One event's model events, with what the reader did not expect named along with the event."""
    try:
        return list(reader.read(data))
    except ModelError:
        raise
    except Exception as exc:
        what = f"unexpected stream event {data[:120]!r} ({type(exc).__name__}: {exc})"
        raise ModelError(options.provider, what) from exc


class WholeChars:
    """Rejoins characters a provider split across two events as JSON-escaped surrogate halves
    (`"\\ud83d"` ending one delta, `"\\ude00"` starting the next): each half alone is not a character.

    A high half ending a delta waits for the next delta of the same block; halves that never pair up
    become U+FFFD, so the text can always be encoded.
    """

    def __init__(self) -> None:
        self.held: dict[tuple[type, str], str] = {}

    def filter(self, events: Iterable[ModelEvent]) -> Iterator[ModelEvent]:
        for event in events:
            if isinstance(event, Finish):
                yield from self._flush()
                yield event
            elif isinstance(event, TextDelta | ReasoningDelta):
                if text := self._join((type(event), ""), event.text):
                    yield type(event)(text)
            elif isinstance(event, ToolCallDelta):
                if text := self._join((ToolCallDelta, event.id), event.args_text):
                    yield ToolCallDelta(event.id, text)
            else:
                yield event

    def _join(self, key: tuple[type, str], text: str) -> str:
        text = self.held.pop(key, "") + text
        if text and "\ud800" <= text[-1] <= "\udbff":
            self.held[key], text = text[-1], text[:-1]
        return _paired(text)

    def _flush(self) -> Iterator[ModelEvent]:
        for (kind, call_id), _ in self.held.items():
            yield ToolCallDelta(call_id, "\ufffd") if kind is ToolCallDelta else kind("\ufffd")
        self.held.clear()


def _paired(text: str) -> str:
    """Surrogate pairs as the characters they encode; a lone half as U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class HttpModel:
    """What the HTTP providers share: settings from arguments or the environment, and one streamed POST.

    A provider names its environment variables, default URL and endpoint, and builds the body, the
    auth headers and a reader for its stream format.
    """

    provider_name: ClassVar[str]
    key_env: ClassVar[str]
    url_env: ClassVar[str]
    default_url: ClassVar[str]
    path: ClassVar[str]
    supports_json_schema: ClassVar[bool]

    def __init__(
        self,
        model_id: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        provider: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.model_id = model_id
        self.provider = provider or self.provider_name
        self._api_key = env_setting(api_key, self.key_env)
        self.options = HttpOptions(
            provider=self.provider,
            base_url=env_setting(base_url, self.url_env, self.default_url),
            headers=self.auth_headers(self._api_key) | (headers or {}),
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            auth_hint=self.auth_hint(),
        )

    def auth_headers(self, api_key: str) -> dict[str, str]:
        raise NotImplementedError

    def auth_hint(self) -> str:
        return f"Check {self.key_env}: export {self.key_env}=<a valid key for this base URL>"

    def body(self, request: ModelRequest) -> dict[str, Any]:
        raise NotImplementedError

    def reader(self) -> StreamReader:
        raise NotImplementedError

    async def stream(self, request: ModelRequest, context: CallContext) -> AsyncIterator[ModelEvent]:
        require_api_key(self.options, self._api_key, self.key_env, self.default_url)
        async for event in stream_model(self.options, self.path, self.body(request), self.reader):
            yield event
