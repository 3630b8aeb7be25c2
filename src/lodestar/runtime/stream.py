"""AgentStream: the chunks of one run, and of the turns chained after it, as an async iterator."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from .chunks import Chunk
from .result import RunResult
from .run import Sink

_END = object()

Producer = Callable[[Sink], Awaitable[RunResult]]
Continuation = Callable[[Sink], Awaitable[object]]


class _Channel:
    """A bounded buffer from the run (and its parallel tool calls) to the stream's one reader.

    asyncio.Queue would do, but this sits on the path of every chunk: here a write that finds room is an
    append, and a read that finds a chunk is a popleft, with no future made or woken."""

    def __init__(self, size: int) -> None:
        self._items: deque[Any] = deque()
        self._size = size
        self._reader: asyncio.Future[None] | None = None
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._size:
            self._room.clear()
            await self._room.wait()
        self._items.append(item)
        if self._reader is not None:
            if not self._reader.done():
                self._reader.set_result(None)
            self._reader = None

    def take(self) -> Any:
        """The next item if one is waiting, else None: the read of a chunk that is there already, no await."""
        if not self._items:
            return None
        if not self._room.is_set():
            self._room.set()
        return self._items.popleft()

    async def get(self) -> Any:
        while not self._items:
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        return self.take()


class AgentStream:
    """An async iterator of chunks written by producers: one run, then any turns chained after it with `then()`.

    The first producer starts on first iteration; the stream ends when the last chained turn ends, and stops
    them when it is closed. Every turn brings its own `start` ... `finish` chunks. The aggregates (`await
    stream.result()`, `stream.text`, ...) are what the first producer returns: its run's result, or for
    `stream_until_idle` one result covering every turn.
    """

    def __init__(self, producer: Producer, *, run_id: str, buffer: int = 256) -> None:
        self.run_id = run_id
        self._producer = producer
        self._turns: deque[Continuation] = deque()
        self._buffer = buffer
        self._started = False
        self._ended = False
        self._chunks: AsyncGenerator[Chunk, None] | None = None
        self._result: RunResult | None = None
        self._error: Exception | None = None

    def then(self, turn: Continuation) -> None:
        """Chain a turn: it writes into this stream once the turns before it end. A running turn may chain the
        next one; chaining after the last turn ended is an error."""
        if self._ended:
            raise RuntimeError("this stream has ended: chain a turn before its last turn ends")
        self._turns.append(turn)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._started:
            raise RuntimeError("this stream was already iterated: call agent.stream() again for a new run")
        self._started = True
        self._chunks = self._iterate()
        return self._chunks

    async def __aenter__(self) -> AgentStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run now if it is still going. Leaving an `async for` early does not stop it by itself:
        the run goes on until the stream is closed or collected, so prefer `async with`."""
        if self._chunks is not None:
            await self._chunks.aclose()

    async def _iterate(self) -> AsyncGenerator[Chunk, None]:
        channel = _Channel(self._buffer)
        task = asyncio.create_task(self._produce(channel))
        try:
            while (item := channel.take() or await channel.get()) is not _END:
                yield item
            try:
                self._result = await task
            except Exception as exc:
                self._error = exc
                raise
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # never swallows the consumer's own cancellation; a run stops promptly
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the consumer has seen it, or has gone

    async def _produce(self, channel: _Channel) -> RunResult:
        """Runs the turns; the end marker goes in only when they ended by themselves (a cancelled stream has
        no reader left, and waiting to put into a full channel would never end)."""
        try:
            result = await self._producer(channel.put)
            while self._turns:
                await self._turns.popleft()(channel.put)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await channel.put(_END)
            raise
        finally:
            self._ended = True
        await channel.put(_END)
        return result

    async def result(self) -> RunResult:
        """The run's result, reading whatever of the stream is left; re-raises what ended the run."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            if self._started:
                raise RuntimeError("the stream was left before its end: iterate it to the end first")
            async for _ in self:
                pass
        assert self._result is not None
        return self._result

    def __getattr__(self, name: str) -> Any:
        """`stream.text`, `stream.usage`, ... once the stream has ended."""
        if name.startswith("_") or (name not in RunResult.model_fields and name not in ("tool_calls", "tool_results")):
            raise AttributeError(name)
        if self._result is None:
            raise RuntimeError(
                f"stream.{name} is known once the stream has ended: iterate it, or await stream.result()"
            )
        return getattr(self._result, name)
