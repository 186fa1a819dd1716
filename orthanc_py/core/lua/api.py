"""The functions Orthanc gives Lua scripts, for one Lua state.

Orthanc's own (LuaContext, LuaScripting): `print` (to the log and to the answer of
/tools/execute-script), `ParseJson`, `DumpJson`, `HttpGet/Post/Put/Delete` with
`SetHttpCredentials` and `SetHttpTimeout` (Orthanc 1.11.1+), `RestApiGet/Post/Put/Delete` (our
own REST API, in-process: no authentication, no HTTP filter, origin "Lua") and
`GetOrthancConfiguration`. Then, written in Lua, `PrintRecursive` and the actions that queue
operations for the job submitted once a callback returns (`SendToModality`, `SendToPeer`,
`Delete`, `ModifyInstance`/`ModifyResource`, `CallSystem`). Each function answers nil on bad
arguments or on failure and logs why, as Orthanc does.
"""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import orjson

from .state import LuaState

log = logging.getLogger("orthanc_py.lua")

LUA_HEADER = "X-Orthanc-Py-Lua"
"""Marks the in-process REST calls of Lua scripts (its value: a secret drawn at start)."""

TOOLBOX = rb"""
function PrintRecursive(value, budget, prefix)
   budget = budget or 100
   prefix = prefix or ""
   if budget < 1 then
      print("ERROR: Item limit reached.")
      return budget - 1
   end
   local kind = type(value)
   if kind ~= "table" then
      print(prefix, kind, value)
      return budget - 1
   end
   print(prefix, kind)
   for key, item in pairs(value) do
      budget = PrintRecursive(item, budget, prefix .. "\t[" .. tostring(key) .. "]")
      if budget < 0 then
         break
      end
   end
   return budget
end

function _InitializeJob()
   _job = {}
end

function _AccessJob()
   return _job
end

local function queue(operation, resource, fields, what)
   if resource == nil then
      error("Cannot " .. what .. " a nonexistent resource")
   end
   fields.Operation = operation
   fields.Resource = resource
   _job[#_job + 1] = fields
end

function SendToModality(resourceId, modality, localAet)
   queue("store-scu", resourceId, { Modality = modality, LocalAet = localAet }, "send")
   return resourceId
end

function SendToPeer(resourceId, peer)
   queue("store-peer", resourceId, { Peer = peer }, "send")
   return resourceId
end

function Delete(resourceId)
   queue("delete", resourceId, {}, "delete")
   return nil
end

function ModifyResource(resourceId, replacements, removals, removePrivateTags)
   if resourceId == "" then
      error("Cannot modify twice a resource")
   end
   queue("modify", resourceId,
         { Replace = replacements, Remove = removals, RemovePrivateTags = removePrivateTags }, "modify")
   return ""
end

function ModifyInstance(resourceId, replacements, removals, removePrivateTags)
   return ModifyResource(resourceId, replacements, removals, removePrivateTags)
end

function CallSystem(resourceId, command, args)
   if command == nil then
      error("No command was specified for system call")
   end
   queue("call-system", resourceId, { Command = command, Arguments = args }, "call a system command on")
   return resourceId
end
"""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the server's private one when the REST API speaks HTTPS)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class RestLoopback:
    """Our own REST API over a loopback connection, as Lua's RestApi* functions see it: the
    HTTP port, or a private Unix socket (a path) when that port speaks HTTPS."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.port: int | str | None = None
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, uri: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self.port is None:
            raise ConnectionError("the REST API is not served")
        hdrs = {**headers, LUA_HEADER: self.token}
        for attempt in range(2):
            if self._conn is None:
                if isinstance(self.port, str):
                    self._conn = _UnixConnection(self.port, 3600)
                else:
                    self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)
            try:
                self._conn.request(method, uri, body=body, headers=hdrs)
                r = self._conn.getresponse()
                return r.status, r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _text(value: Any) -> str | None:
    """Lua's lua_isstring: strings and numbers."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _body(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    text = _text(value)
    return None if text is None else text.encode()


class LuaApi:
    """Registers the API into a state; keeps the per-state HTTP client settings."""

    def __init__(self, state: LuaState, config: Mapping[str, Any], rest: RestLoopback, http_timeout: float) -> None:
        self.state = state
        self.config = config
        self.rest = rest
        self.http_timeout = http_timeout
        self.http_timeout_default = http_timeout
        self.credentials: tuple[str, str] | None = None

    def install(self) -> None:
        """On the state's thread: the functions, then the toolbox."""
        s = self.state
        for name, fn in (
            ("ParseJson", self.parse_json),
            ("DumpJson", self.dump_json),
            ("HttpGet", self.http_get),
            ("HttpPost", self.http_post),
            ("HttpPut", self.http_put),
            ("HttpDelete", self.http_delete),
            ("SetHttpCredentials", self.set_http_credentials),
            ("SetHttpTimeout", self.set_http_timeout),
            ("RestApiGet", self.rest_get),
            ("RestApiPost", self.rest_post),
            ("RestApiPut", self.rest_put),
            ("RestApiDelete", self.rest_delete),
            ("GetOrthancConfiguration", self.get_configuration),
        ):
            s.register(name, fn)
        s.execute(TOOLBOX)

    # --- JSON --------------------------------------------------------------------------------

    def parse_json(self, *args: Any) -> Any:
        text = _text(args[0]) if len(args) == 1 else None
        if text is None:
            return None
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        return self.state.push(value)

    def dump_json(self, *args: Any) -> Any:
        if len(args) not in (1, 2) or (len(args) == 2 and not isinstance(args[1], bool)):
            return None
        keep = len(args) == 2 and bool(args[1])
        return orjson.dumps(self.state.to_json(args[0], keep), option=orjson.OPT_SORT_KEYS)

    def get_configuration(self, *args: Any) -> Any:
        return self.state.push(dict(self.config))

    # --- HTTP client -------------------------------------------------------------------------

    def _headers(self, value: Any, lower: bool) -> dict[str, str]:
        if value is None:
            return {}
        json = self.state.to_json(value, True)
        if not isinstance(json, dict):
            return {}
        out = {}
        for k, v in json.items():
            out[k.lower() if lower else k] = v if isinstance(v, str) else orjson.dumps(v).decode()
        return out

    def _http(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        if self.credentials is not None:
            token = base64.b64encode(f"{self.credentials[0]}:{self.credentials[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        timeout = self.http_timeout if self.http_timeout > 0 else None
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def http_get(self, *args: Any) -> Any:
        url = _text(args[0]) if 1 <= len(args) <= 2 else None
        if url is None:
            log.error("Lua: Bad parameters to HttpGet()")
            return None
        return self._answer("HttpGet", "GET", url, None, args[1] if len(args) > 1 else None)

    def _post_put(self, method: str, args: tuple[Any, ...]) -> Any:
        url = _text(args[0]) if 1 <= len(args) <= 3 else None
        if url is None or (len(args) >= 2 and args[1] is not None and _text(args[1]) is None):
            log.error("Lua: Bad parameters to HttpPost() or HttpPut()")
            return None
        body = _body(args[1]) if len(args) >= 2 and args[1] is not None else None
        return self._answer("HttpPost() or HttpPut", method, url, body or None, args[2] if len(args) > 2 else None)

    def http_post(self, *args: Any) -> Any:
        return self._post_put("POST", args)

    def http_put(self, *args: Any) -> Any:
        return self._post_put("PUT", args)

    def _answer(self, what: str, method: str, url: str, body: bytes | None, headers: Any) -> Any:
        """The body of a 2xx answer; an empty string for another status (Orthanc 1.10.1 drops
        the body of an HTTP error); nil when no answer came."""
        try:
            status, data = self._http(method, url, body, self._headers(headers, False))
            return data if 200 <= status < 300 else b""
        except Exception as exc:
            log.error("Lua: Error in %s() for URL %s: %s", what, url, exc)
            return None

    def http_delete(self, *args: Any) -> Any:
        url = _text(args[0]) if 1 <= len(args) <= 2 else None
        if url is None:
            log.error("Lua: Bad parameters to HttpDelete()")
            return None
        try:
            status, _ = self._http("DELETE", url, None, self._headers(args[1] if len(args) > 1 else None, False))
        except Exception as exc:
            log.error("Lua: Error in HttpDelete() for URL %s: %s", url, exc)
            return None
        return b"SUCCESS" if 200 <= status < 300 else None

    def set_http_credentials(self, *args: Any) -> None:
        if len(args) != 2 or _text(args[0]) is None or _text(args[1]) is None:
            log.error("Lua: Bad parameters to SetHttpCredentials()")
            return
        self.credentials = (str(_text(args[0])), str(_text(args[1])))

    def set_http_timeout(self, *args: Any) -> None:
        if len(args) != 1 or not isinstance(args[0], int | float) or isinstance(args[0], bool):
            log.error("Lua: Bad parameters to SetHttpTimeout()")
            return
        self.http_timeout = float(args[0])

    # --- our REST API ------------------------------------------------------------------------

    def _rest(self, name: str, method: str, uri: str, body: bytes | None, headers: Any) -> tuple[int, bytes] | None:
        try:
            return self.rest.request(method, uri, body, self._headers(headers, True))
        except Exception as exc:
            log.error("Lua: %s", exc)
            return None

    def rest_get(self, *args: Any) -> Any:
        return self._rest_read("RestApiGet", "GET", args, with_body=False)

    def rest_post(self, *args: Any) -> Any:
        return self._rest_read("RestApiPost", "POST", args, with_body=True)

    def rest_put(self, *args: Any) -> Any:
        return self._rest_read("RestApiPut", "PUT", args, with_body=True)

    def _rest_read(self, name: str, method: str, args: tuple[Any, ...], with_body: bool) -> Any:
        first = 2 if with_body else 1  # index of the `builtin` flag
        low, high = (2, 4) if with_body else (1, 3)
        uri = _text(args[0]) if low <= len(args) <= high else None
        body = _body(args[1]) if with_body and len(args) >= 2 else None
        if uri is None or (with_body and body is None) or (len(args) > first and not isinstance(args[first], bool)):
            log.error("Lua: Bad parameters to %s()", name)
            return None
        answer = self._rest(name, method, uri, body, args[first + 1] if len(args) > first + 1 else None)
        if answer is not None and answer[0] == 200:
            return answer[1]
        log.error("Lua: Error in %s() for URI: %s", name, uri)
        return None

    def rest_delete(self, *args: Any) -> Any:
        uri = _text(args[0]) if 1 <= len(args) <= 3 else None
        if uri is None or (len(args) > 1 and not isinstance(args[1], bool)):
            log.error("Lua: Bad parameters to RestApiDelete()")
            return None
        answer = self._rest("RestApiDelete", "DELETE", uri, None, args[2] if len(args) > 2 else None)
        if answer is not None and answer[0] == 200:
            return True
        log.error("Lua: Error in RestApiDelete() for URI: %s", uri)
        return None
