"""Standard input as lines, read by the event loop itself: no thread to wait for at exit.

``asyncio.to_thread(sys.stdin.readline)`` leaves a thread blocked in
``read()`` that nothing can interrupt: at Ctrl-C the event loop's shutdown
waits for it (for ever on a terminal), and the line typed next goes to that
thread and is lost. :class:`StdinLines` instead asks the loop to watch the
file descriptor (``add_reader``) and reads only once it is readable, so a
read never blocks and :meth:`StdinLines.close` ends the iteration at once.

A terminal in canonical mode is readable when a whole line (or Ctrl-D) is
there; a pipe when any bytes are. A regular file or ``/dev/null`` cannot be
watched (epoll refuses them) but never blocks either: it is read directly.
The file descriptor stays in blocking mode, so the shell that gets the
terminal back sees it as it left it.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import sys
from typing import TextIO

CHUNK = 65536
"""Bytes read at a time."""


class StdinLines:
    """An async iterator of the lines on ``stream`` (standard input), each with its newline.

    The last line may lack its newline; the iteration ends at end of input
    or at :meth:`close`. ``prompt`` prints ``> `` before each line is read
    (on a terminal), and a newline at end of input, so that the shell's
    prompt starts on its own line.
    """

    def __init__(self, stream: TextIO | None = None, *, prompt: bool = False) -> None:
        self._stream = stream or sys.stdin
        self._fd = self._stream.fileno()
        encoding = getattr(self._stream, "encoding", None) or "utf-8"
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._prompt = prompt
        self._pending = ""
        self._ended = False
        self._closed = False
        self._prompted = False
        self._waiting: asyncio.Future[None] | None = None
        self._watchable = True

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        if self._prompt and not self._prompted and not self._closed:
            print("> ", end="", flush=True)
            self._prompted = True
        while not self._closed:
            line, newline, rest = self._pending.partition("\n")
            if newline:
                self._pending = rest
                self._prompted = False
                return line + newline
            if self._ended:
                break
            await self._read()
        if self._pending and not self._closed:  # a last line without its newline
            line, self._pending = self._pending, ""
            return line
        if self._prompt and self._ended:
            print(flush=True)  # Ctrl-D: the shell's prompt starts on its own line
        raise StopAsyncIteration

    def close(self) -> None:
        """End the iteration now: a read under way returns nothing, the next one ends."""
        self._closed = True
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def _read(self) -> None:
        """Wait until stdin is readable, then take what it has (b'' is end of input)."""
        if self._watchable:
            loop = asyncio.get_running_loop()
            self._waiting = loop.create_future()
            try:
                loop.add_reader(self._fd, self._readable)
            except (PermissionError, ValueError, OSError):
                self._watchable = False  # a regular file or /dev/null: reads never block
            else:
                try:
                    await self._waiting
                finally:
                    loop.remove_reader(self._fd)
                    self._waiting = None
                if self._closed:
                    return
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return  # someone else took the bytes: wait again
        except OSError:
            data = b""  # the terminal went away (EIO): end of input
        if not data:
            self._ended = True
            self._pending += self._decoder.decode(b"", final=True)
        else:
            self._pending += self._decoder.decode(data)

    def _readable(self) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)
