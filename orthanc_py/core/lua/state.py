"""One Lua interpreter (real Lua 5.3 through lupa, the version Orthanc 1.10.1 links) owned by a
dedicated thread: every call into it is queued to that thread, so Lua never runs on the event loop
and two calls never interleave (Orthanc locks its Lua context the same way).

Also the conversions between JSON values and Lua values, with Orthanc's rules (LuaContext's
PushJson and GetJson): JSON numbers become Lua floats; a Lua table is a JSON array when its keys,
in iteration order, are 1, 2, ... n (so an empty table is `[]`); a number whose truncation loses
nothing becomes an integer; a string that Lua reads as a number becomes a number unless strings
are kept.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from lupa import lua53

from ...errors import ErrorCode, OrthancError

log = logging.getLogger("orthanc_py.lua")
T = TypeVar("T")

LuaError = lua53.LuaError
CHUNK_NAME = "line"
"""Orthanc loads every script under this chunk name: its errors read `[string "line"]:3: ...`."""

_INT_MAX = 2**31 - 1
_LAZY_TABLE = b"""
function(load)
   local t = {}
   local function fill()
      if getmetatable(t) ~= nil then
         setmetatable(t, nil)
         for k, v in pairs(load()) do rawset(t, k, v) end
      end
   end
   return setmetatable(t, {
      __index = function(_, k) fill() return rawget(t, k) end,
      __pairs = function(_) fill() return next, t, nil end,
      __len = function(_) fill() return rawlen(t) end,
      __orthanc_fill = fill,
   })
end
"""
BATCH_DELAY = 0.005
"""Seconds the thread waits after an event woke it, so that a burst of events costs one wake-up."""


def error_text(exc: BaseException) -> str:
    """The message of a Lua error as Orthanc reports it (no traceback, no loader prefix)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    text = text.split("\nstack traceback:", 1)[0]
    return text.removeprefix("error loading code: ")


class LuaState:
    """A Lua runtime and the thread that alone may touch it."""

    def __init__(self, name: str) -> None:
        self.runtime = lua53.LuaRuntime(encoding=None, unpack_returned_tuples=True, register_eval=False)
        self.globals = self.runtime.globals()
        self._tostring = self.globals.tostring
        self._tonumber = self.globals.tonumber
        self._wrap = self.runtime.eval(b"function(f) return function(...) return f(...) end end")
        self._getmetatable = self.globals.getmetatable
        self._lazy = self.runtime.eval(_LAZY_TABLE)
        self._log: list[bytes] = []
        self._cond = threading.Condition()
        self._urgent: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = collections.deque()
        self._events: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = collections.deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name=f"lua-{name}", daemon=True)
        self.register("print", self._print)
        self._thread.start()

    # --- the thread -------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._urgent and not self._events and not self._stopping:
                    self._cond.wait()
                if not self._urgent and self._events and len(self._events) == 1 and not self._stopping:
                    # An event woke the thread: let a few more arrive and run them in one go
                    # (one wake-up per batch, not per stored instance); a request cuts it short.
                    self._cond.wait(BATCH_DELAY)
                if self._urgent:
                    fn, fut = self._urgent.popleft()
                elif self._events:
                    fn, fut = self._events.popleft()
                else:
                    return  # stopping, nothing left
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # reported to the caller, never kills the thread
                fut.set_exception(exc)

    def submit(self, fn: Callable[[], T], urgent: bool = False) -> concurrent.futures.Future[T]:
        """Run `fn` on the Lua thread (the only thread that may use `runtime`). An urgent call
        (a request waiting: a filter, /tools/execute-script) runs as soon as the current one is
        over, before the queued events, as a call that takes Orthanc's Lua lock does."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if urgent:
                self._urgent.append((fn, fut))
                self._cond.notify()
            else:
                self._events.append((fn, fut))
                if len(self._events) == 1:  # else the thread is busy with the queue and will see it
                    self._cond.notify()
        return fut

    def in_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call_blocking(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the Lua thread and wait (from any thread but the event loop's)."""
        if self.in_thread():
            return fn()
        return self.submit(fn).result()

    def stop(self) -> None:
        """The thread ends once the queued calls have run."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(10)

    # --- what runs on the thread ------------------------------------------------------------

    def _print(self, *args: Any) -> None:
        line = b""
        for a in args:
            s = self._tostring(a)
            if line:  # Orthanc adds the separator only after something non-empty
                line += b", "
            line += s.split(b"\0", 1)[0] if isinstance(s, bytes) else b"<No conversion to string>"
        log.warning("Lua says: %s", line.decode("utf-8", "replace"))
        self._log.append(line + b"\n")

    def execute(self, script: bytes) -> bytes:
        """Run a chunk; answer what it printed. A Lua error raises CannotExecuteLua (2031) with
        Lua's message as details, as Orthanc answers /tools/execute-script."""
        self._log = []
        try:
            self.runtime.execute(script, name=CHUNK_NAME)
        except LuaError as exc:
            raise OrthancError(ErrorCode.CANNOT_EXECUTE_LUA, error_text(exc)) from None
        return b"".join(self._log)

    def is_function(self, name: str) -> bool:
        return lua53.lua_type(self.globals[name.encode()]) == "function"

    def call(self, name: str, *args: Any) -> Any:
        """Call a global function; a Lua error raises CannotExecuteLua."""
        fn = self.globals[name.encode()]
        self._log = []
        try:
            return fn(*args)
        except LuaError as exc:
            raise OrthancError(ErrorCode.CANNOT_EXECUTE_LUA, error_text(exc)) from None

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """A Python function as a global Lua function (a Lua closure: `type(name)` is "function",
        as for Orthanc's C functions)."""
        self.globals[name.encode()] = self._wrap(fn)

    def lazy(self, load: Callable[[], Any]) -> Any:
        """A table filled by `load()` (a Lua table) the first time a script reads it: OnStoredInstance's
        tags cost a parse of the whole file, and most callbacks never read them. Indexing,
        `pairs`, `#` and DumpJson see the full table; once filled it is a plain table."""
        return self._lazy(load)

    # --- JSON <-> Lua -----------------------------------------------------------------------

    def push(self, value: Any) -> Any:
        """A JSON value as a Lua value (Orthanc's PushJson: every number a float, nulls dropped)."""
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            return float(value)
        table = self.runtime.table()
        if isinstance(value, list):
            for i, item in enumerate(value, 1):
                if item is not None:
                    table[float(i)] = self.push(item)
        elif isinstance(value, dict):
            for k, item in value.items():
                if item is not None:
                    table[str(k).encode()] = self.push(item)
        else:
            raise OrthancError(ErrorCode.JSON_TO_LUA_TABLE)
        return table

    def push_strings(self, value: dict[str, str]) -> Any:
        table = self.runtime.table()
        for k, v in value.items():
            table[k.encode()] = v.encode()
        return table

    def to_json(self, value: Any, keep_strings: bool = False) -> Any:
        """A Lua value as JSON (Orthanc's GetJson)."""
        if lua53.lua_type(value) == "table":
            meta = self._getmetatable(value)
            if meta is not None and lua53.lua_type(meta) == "table" and meta[b"__orthanc_fill"] is not None:
                meta[b"__orthanc_fill"]()
            tmp: dict[str, Any] = {}
            is_array = True
            size = 0
            for k, v in value.items():
                key = self._key_text(k)
                tmp[key] = self.to_json(v, keep_strings)
                size += 1
                if not (key.isdigit() and key.isascii() and int(key) == size):
                    is_array = False
            if is_array:
                return [tmp[str(i + 1)] for i in range(size)]
            return tmp
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if not keep_strings:
            number = value if isinstance(value, int | float) else self._tonumber(value)
            if number is not None and isinstance(number, int | float):
                return _json_number(float(number))
        if isinstance(value, bytes):
            return value.split(b"\0", 1)[0].decode("utf-8", "replace")
        if isinstance(value, int | float):
            return self._tostring(value).decode()
        log.warning("Unsupported Lua type when returning Json")
        return None

    def _key_text(self, key: Any) -> str:
        if isinstance(key, bytes):
            return key.decode("utf-8", "replace")
        text = self._tostring(key)
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else ""


def _json_number(value: float) -> int | float:
    """Orthanc keeps an integer when truncating to a C int loses nothing."""
    if math.isfinite(value) and -_INT_MAX - 1 <= value <= _INT_MAX:
        truncated = int(value)
        if abs(value - truncated) <= 2.220446049250313e-16:
            return truncated
    return value
