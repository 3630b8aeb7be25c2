"""HTTP plumbing shared by the providers: one pooled client per event loop, retries, SSE parsing."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import anyio
import httpx

from ..._loops import PerLoop
from ..usage import Usage
from .base import CallContext, Finish, ModelError, ModelEvent, ModelRequest

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
RETRY_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "server_error", "rate_limit_error"})
TRANSIENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


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


def retry_delay(attempt: int, retry_after: str | None, options: HttpOptions) -> float:
    """The server's Retry-After when it gave one, else exponential backoff with equal jitter."""
    told = _parse_retry_after(retry_after)
    if told is not None:
        return told
    ceiling = min(options.max_backoff_s, options.backoff_s * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def _parse_retry_after(value: str | None) -> float | None:
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
    return ModelError(options.provider, message, status=status, retryable=status in RETRY_STATUSES)


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


def _transport_error(options: HttpOptions, exc: Exception) -> ModelError:
    if isinstance(exc, httpx.TimeoutException):
        what = f"no response within {options.timeout_s:g} s from {options.base_url}"
        what += "; raise timeout_s or check the server"
    else:
        what = f"cannot reach {options.base_url} ({type(exc).__name__}: {exc}); check the URL and that the server runs"
    return ModelError(options.provider, what, retryable=True)


@asynccontextmanager
async def post_stream(options: HttpOptions, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
    """POST and hand back a streaming 2xx response, retrying what may succeed on a second try.

    Only failures before the first byte of the body are retried: a stream that broke halfway has
    already been shown to the caller, so it ends with an error instead of repeating itself.
    """
    client = shared_client()
    url = options.base_url.rstrip("/") + path
    timeout = httpx.Timeout(options.timeout_s, connect=min(options.timeout_s, 15.0))
    attempt = 0
    while True:
        try:
            request = client.build_request("POST", url, headers=options.headers, json=body, timeout=timeout)
            response = await client.send(request, stream=True)
        except (httpx.TimeoutException, *TRANSIENT_ERRORS) as exc:
            error, delay = _transport_error(options, exc), None
        else:
            if response.is_success and _is_event_stream(response):
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            try:
                await response.aread()
            except (httpx.TimeoutException, *TRANSIENT_ERRORS) as exc:
                error, delay = _transport_error(options, exc), None
            else:
                error, delay = status_error(options, response), response.headers.get("retry-after")
            finally:
                await response.aclose()
        wait = retry_delay(attempt, delay, options)
        too_long = wait > options.max_retry_after_s
        if not error.retryable or attempt >= options.max_retries or too_long:
            if attempt:
                error.args = (f"{error.args[0]} (after {attempt + 1} attempts)",)
            if too_long and error.retryable:
                error.args = (f"{error.args[0]}; the server asked to wait {wait:.0f} s before retrying",)
            raise error
        await anyio.sleep(wait)
        attempt += 1


async def sse_events(options: HttpOptions, response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as (event name, data) pairs; transport failures mid-stream become ModelError."""
    event, data = "message", []
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
        raise _transport_error(options, exc) from exc


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
    """An error reported inside a 2xx stream. Not retried here: part of the answer may already be shown."""
    kind = (error.get("type") or error.get("code")) if isinstance(error, dict) else None
    message = f"error in the response stream: {error_message(error)}"
    return ModelError(options.provider, message, retryable=kind in RETRY_ERROR_TYPES)


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

    reasons: ClassVar[Mapping[str, str]]  # the provider's finish reasons -> ours
    ended: bool  # the provider's end-of-stream marker arrived
    raw_reason: str | None  # the provider's own finish reason, once it said one

    @property
    def usage(self) -> Usage: ...

    def read(self, data: str) -> Iterable[ModelEvent]: ...


async def stream_model(
    options: HttpOptions, path: str, body: dict[str, Any], reader: StreamReader
) -> AsyncIterator[ModelEvent]:
    """POST a streaming request and yield its events, then exactly one Finish once the provider is done."""
    async with post_stream(options, path, body) as response:
        async for _, data in sse_events(options, response):
            for event in reader.read(data):
                yield event
            if reader.ended:
                break
    if not (reader.ended or reader.raw_reason):
        raise ModelError(options.provider, "the response stream stopped before the model finished", retryable=True)
    yield Finish(reader.reasons.get(reader.raw_reason or "", "other"), reader.raw_reason, reader.usage)


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
        async for event in stream_model(self.options, self.path, self.body(request), self.reader()):
            yield event
