"""core/lua/state: Orthanc's rules for values crossing between JSON and Lua, and print."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orthanc_py.core.lua.state import LuaState
from orthanc_py.errors import OrthancError


@pytest.fixture
def state() -> Iterator[LuaState]:
    s = LuaState("test")
    yield s
    s.stop()


def on(state: LuaState, fn: Any) -> Any:
    return state.call_blocking(fn)


def test_json_to_lua_numbers_are_floats_and_nulls_leave_holes(state: LuaState) -> None:
    def go() -> bytes:
        state.globals.v = state.push({"a": [1, None, "x"], "n": 3, "b": True, "z": None})
        return state.execute(b"print(v.a[1], v.a[2], v.a[3], #v.a, v.n, math.type(v.n), v.b, v.z)")

    assert on(state, go) == b"1.0, nil, x, 1, 3.0, float, true, nil\n"


@pytest.mark.parametrize(
    ("lua", "keep", "expected"),
    [
        ("{}", False, []),
        ("{1, 2, 'a'}", False, [1, 2, "a"]),
        ("{[1] = 1, [3] = 3}", False, {"1": 1, "3": 3}),
        ("{a = 1.5, b = {true}}", False, {"a": 1.5, "b": [True]}),
        ("'12'", False, 12),
        ("'12'", True, "12"),
        ("{1.0, 2}", True, ["1.0", "2"]),
        ("2^40", False, 1099511627776.0),
        ("-0.0", False, 0),
        ("nil", False, None),
    ],
)
def test_lua_to_json(state: LuaState, lua: str, keep: bool, expected: Any) -> None:
    assert on(state, lambda: state.to_json(state.runtime.execute(f"return {lua}".encode()), keep)) == expected


def test_print_joins_as_orthanc(state: LuaState) -> None:
    assert on(state, lambda: state.execute(b"print('', 'a', nil, '', 'b')")) == b"a, nil, , b\n"
    assert on(state, lambda: state.execute(b"print('x\\0y') print()")) == b"x\n\n"


def test_errors_read_as_orthanc_reports_them(state: LuaState) -> None:
    with pytest.raises(OrthancError) as err:
        on(state, lambda: state.execute(b"local a = 1\nerror('boom')"))
    assert err.value.details == '[string "line"]:2: boom'
    with pytest.raises(OrthancError) as err:
        on(state, lambda: state.execute(b"x = "))
    assert err.value.details == '[string "line"]:1: unexpected symbol near <eof>'


def test_lazy_table_is_filled_once_on_first_read(state: LuaState) -> None:
    loads: list[int] = []

    def load() -> Any:
        loads.append(1)
        return state.push({"A": "1", "B": "x"})

    def go() -> tuple[Any, bytes]:
        state.globals.t = state.lazy(load)
        state.globals.u = state.lazy(load)
        out = state.execute(b"print(t.B, t.C) local n = 0 for k in pairs(t) do n = n + 1 end print(n, getmetatable(t))")
        return state.to_json(state.globals.u), out

    json, out = on(state, go)
    assert out == b"x, nil\n2, nil\n"
    assert json == {"A": 1, "B": "x"}
    assert len(loads) == 2
