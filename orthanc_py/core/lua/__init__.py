"""Lua scripting (Orthanc's LuaScripting): real Lua 5.3 through lupa, on threads of its own.

`state` owns one interpreter and its thread, `api` the functions scripts call, `scripting` the
service the rest of the server talks to (hooks, filters, /tools/execute-script, jobs)."""

from .scripting import LuaScripting

__all__ = ["LuaScripting"]
