"""Lua scripting as Orthanc runs it: /tools/execute-script, LuaScripts, the Lua API, callbacks
and filters, with real uploads, C-STOREs and HTTP requests (core/lua)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dicomgen
import pytest

LUA = {"ExecuteLuaEnabled": True}


def run(client: Any, script: str) -> str:
    r = client.post("/tools/execute-script", script, headers={"Content-Type": "application/lua"})
    assert r.status == 200, r.body
    return r.body.decode()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def printed(client: Any, name: str = "seen") -> list[str]:
    """What the scripts appended to the global list `name` (as JSON strings)."""
    out = run(client, f"print(DumpJson({name} or {{}}))")
    return json.loads(out)


@pytest.fixture
def lua(make_server: Any) -> Any:
    return make_server(LUA).client()


# --- /tools/execute-script ---------------------------------------------------------------


def test_execute_script_answers_what_print_writes(lua: Any) -> None:
    r = lua.post("/tools/execute-script", "print(42)")
    assert (r.status, r.body) == (200, b"42\n")
    assert r.headers["content-type"].startswith("text/plain")
    # Orthanc's print: tostring of each argument, ", " between them, after something non-empty
    assert run(lua, "print(1, 'a', nil, true, 2.5, 3.0, 10 // 3)") == "1, a, nil, true, 2.5, 3.0, 3\n"
    assert run(lua, "print('', 'x')") == "x\n"
    assert run(lua, "print()") == "\n"
    assert run(lua, "x = 1") == ""
    assert run(lua, "print(_VERSION)") == "Lua 5.3\n"  # the Lua Orthanc 1.10.1 links


def test_one_state_a_later_script_redefines_a_function(lua: Any) -> None:
    run(lua, "function Hello() return 'first' end counter = 1")
    assert run(lua, "print(Hello(), counter)") == "first, 1\n"
    run(lua, "function Hello() return 'second' end counter = counter + 1")
    assert run(lua, "print(Hello(), counter)") == "second, 2\n"
    assert run(lua, "print(type(HelloWorld), type(PrintRecursive))") == "nil, function\n"


def test_lua_error_is_cannot_execute_lua_and_harmless(lua: Any) -> None:
    for script, details in (
        ("x = ", '[string "line"]:1: unexpected symbol near <eof>'),
        ("error('boom')", '[string "line"]:1: boom'),
        ("local t = nil\nprint(t.x)", "[string \"line\"]:2: attempt to index a nil value (local 't')"),
    ):
        r = lua.post("/tools/execute-script", script)
        assert r.status == 500
        body = r.json()
        assert (body["OrthancStatus"], body["Details"]) == (2031, details)
        assert body["Message"] == "Cannot execute a Lua command"
    assert run(lua, "print('still alive')") == "still alive\n"


def test_execute_script_refused_when_disabled(make_server: Any) -> None:
    c = make_server({"ExecuteLuaEnabled": False}).client()
    r = c.post("/tools/execute-script", "print(42)")
    assert (r.status, r.body) == (403, b"")


def test_lua_scripts_loaded_in_order_with_initialize(make_server: Any, tmp_path: Path) -> None:
    first = tmp_path / "first.lua"
    first.write_text("order = { 'first' }\nfunction Initialize() table.insert(order, 'Initialize') end\n")
    second = tmp_path / "second.lua"
    second.write_text("table.insert(order, 'second')\n")
    c = make_server({**LUA, "LuaScripts": [str(first), str(second)]}).client()
    assert wait_for(lambda: printed(c, "order") == ["first", "second", "Initialize"])


def test_broken_lua_script_stops_the_start(make_server: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.lua"
    bad.write_text("this is not lua")
    with pytest.raises(Exception, match="syntax error"):
        make_server({"LuaScripts": [str(bad)]})


# --- the Lua API ---------------------------------------------------------------------------


def test_json_functions_as_orthanc(lua: Any) -> None:
    out = run(
        lua,
        "print(DumpJson({}), DumpJson({1,2,'a'}), DumpJson({a=1, b={true,false}}), DumpJson(1.5), "
        "DumpJson(3), DumpJson('x'), DumpJson(true), DumpJson(nil))",
    )
    assert out == '[], [1,2,"a"], {"a":1,"b":[true,false]}, 1.5, 3, "x", true, null\n'
    out = run(lua, "print(DumpJson({1,2}, true), DumpJson({[1]=1,[3]=3}), DumpJson('12'), DumpJson(2^40), DumpJson())")
    assert out == '["1","2"], {"1":1,"3":3}, 12, 1099511627776.0, nil\n'
    # JSON numbers become Lua floats; a null inside an array leaves a hole
    out = run(lua, "local v = ParseJson('[1, 2.5, \"x\", null, true]') print(#v, v[1], v[2], v[3], v[4], v[5])")
    assert out == "3, 1.0, 2.5, x, nil, true\n"
    assert run(lua, "print(ParseJson('not json'), ParseJson('\"s\"'), ParseJson(12))") == "nil, s, 12.0\n"


def test_print_recursive(lua: Any) -> None:
    assert run(lua, "PrintRecursive('hello')") == "string, hello\n"
    assert run(lua, "PrintRecursive({ b = { c = 'x' } })") == "table\n\t[b], table\n\t[b]\t[c], string, x\n"


def test_get_orthanc_configuration(make_server: Any) -> None:
    c = make_server({**LUA, "Name": "LuaConf", "MyCustom": {"a": [1, 2]}}).client()
    out = run(c, "local c = GetOrthancConfiguration() print(c.Name, DumpJson(c.MyCustom), c.Nothing)")
    assert out == 'LuaConf, {"a":[1,2]}, nil\n'


def test_rest_api_functions_go_through_our_rest_api(make_server: Any) -> None:
    # authentication on: Lua's calls are in-process and need none
    srv = make_server({**LUA, "AuthenticationEnabled": True, "RegisteredUsers": {"alice": "pw"}})
    c = srv.client(auth=("alice", "pw"))
    assert run(c, "print(RestApiGet('/nothing'), RestApiDelete('/patients/nope'))") == "nil, nil\n"
    assert run(c, "print(ParseJson(RestApiGet('/system')).Name)") == "MyOrthanc\n"
    data = dicomgen.make(patient=1)
    # an upload from Lua (binary body) is stored with origin "Lua"
    c.put("/tools/default-encoding", "Latin1")
    run(c, "function store(body) answer = ParseJson(RestApiPost('/instances', body)) end")
    path = srv.settings.storage_directory.parent / "upload.dcm"
    path.write_bytes(data)
    out = run(c, f"local f = io.open('{path}', 'rb') local d = f:read('a') f:close() store(d) print(answer.Status)")
    assert out == "Success\n"
    iid = c.get("/instances").json()[0]
    assert c.get(f"/instances/{iid}/metadata/Origin").body == b"Lua"
    assert run(c, f"print(RestApiPut('/instances/{iid}/metadata/1025', 'v'))") == "\n"  # an empty answer
    assert c.get(f"/instances/{iid}/metadata/1025").body == b"v"
    out = run(
        c, f"print(RestApiGet('/instances/{iid}/simplified-tags', false, {{['Accept'] = 'application/json'}}) ~= nil)"
    )
    assert out == "true\n"
    assert run(c, f"print(RestApiDelete('/instances/{iid}'))") == "true\n"
    assert c.get("/instances").json() == []


def test_http_functions(make_server: Any) -> None:
    target = make_server({"AuthenticationEnabled": True, "RegisteredUsers": {"bob": "secret"}})
    c = make_server(LUA).client()
    url = f"http://127.0.0.1:{target.port}"
    out = run(c, f"print(HttpGet('{url}/system') ~= nil, HttpGet('http://127.0.0.1:1/x'))")
    assert out == "true, nil\n"  # the 401 body is answered; no server: nil
    run(c, "SetHttpCredentials('bob', 'secret') SetHttpTimeout(5)")
    assert run(c, f"print(ParseJson(HttpGet('{url}/system')).Name)") == "MyOrthanc\n"
    out = run(c, f"print(HttpPost('{url}/tools/lookup', 'nothing'), HttpDelete('{url}/patients/nope'))")
    assert out == "[]\n, nil\n"
    out = run(c, f"print(HttpPut('{url}/tools/default-encoding', 'Utf8', {{['Content-Type'] = 'text/plain'}}))")
    assert out == "Utf8\n"
    assert target.client(auth=("bob", "secret")).get("/tools/default-encoding").body == b"Utf8"
