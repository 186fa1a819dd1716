"""Lua scripting as Orthanc runs it: /tools/execute-script, LuaScripts, the Lua API, callbacks
and filters, with real uploads, C-STOREs and HTTP requests (core/lua)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

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
    out = run(c, f"print(HttpGet('{url}/system') == '', HttpGet('http://127.0.0.1:1/x'))")
    assert out == "true, nil\n"  # an HTTP error: an empty string (Orthanc 1.10.1); no server: nil
    run(c, "SetHttpCredentials('bob', 'secret') SetHttpTimeout(5)")
    assert run(c, f"print(ParseJson(HttpGet('{url}/system')).Name)") == "MyOrthanc\n"
    out = run(c, f"print(HttpPost('{url}/tools/lookup', 'nothing'), HttpDelete('{url}/patients/nope'))")
    assert out == "[]\n, nil\n"
    out = run(c, f"print(HttpPut('{url}/tools/default-encoding', 'Utf8', {{['Content-Type'] = 'text/plain'}}))")
    assert out == "Utf8\n"
    assert target.client(auth=("bob", "secret")).get("/tools/default-encoding").body == b"Utf8"


# --- filters -------------------------------------------------------------------------------

FILTERS = """
function ReceivedInstanceFilter(tags, origin, info)
   if tags.PatientID == 'REFUSE' then return false end
   if tags.PatientID == 'ERROR' then error('filter failed') end
   return true
end
function ReceivedCStoreInstanceFilter(tags, origin, info)
   if tags.PatientID == 'CS0' then return 0 end
   if tags.PatientID == 'CSERR' then error('cstore filter failed') end
   return 1
end
"""


@pytest.fixture
def filtering(make_server: Any, tmp_path: Path) -> Any:
    script = tmp_path / "filters.lua"
    script.write_text(FILTERS)
    return make_server(
        {**LUA, "LuaScripts": [str(script)], "DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"}
    )


def c_store(port: int, data: bytes) -> int:
    ae = AE(ae_title="LUASCU")
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(pydicom.dcmread(io.BytesIO(data))).Status)
    finally:
        assoc.release()


def test_received_instance_filter_on_rest_uploads(filtering: Any) -> None:
    c = filtering.client()
    assert c.upload(dicomgen.make(patient=1, patient_id="KEEP"))["Status"] == "Success"
    refused = c.post("/instances", dicomgen.make(patient=2, patient_id="REFUSE"))
    assert refused.status == 200 and refused.json()["Status"] == "FilteredOut"
    failed = c.post("/instances", dicomgen.make(patient=3, patient_id="ERROR"))
    assert failed.status == 500
    assert failed.json()["OrthancStatus"] == 2031 and "filter failed" in failed.json()["Details"]
    ids = [p["MainDicomTags"]["PatientID"] for p in c.get("/patients?expand").json()]
    assert ids == ["KEEP"]
    # the filters live in their own state (as in Orthanc): execute-script does not reach them
    run(c, "function ReceivedInstanceFilter() return false end")
    assert c.upload(dicomgen.make(patient=4, patient_id="OTHER"))["Status"] == "Success"


def test_received_cstore_instance_filter(filtering: Any) -> None:
    port = filtering.ctx.dicom_port
    assert c_store(port, dicomgen.make(patient=1, patient_id="KEEP")) == 0
    # Orthanc 1.10.1: 0 refuses the instance, the C-STORE still succeeds
    assert c_store(port, dicomgen.make(patient=2, patient_id="CS0")) == 0
    assert c_store(port, dicomgen.make(patient=3, patient_id="REFUSE")) == 0
    assert c_store(port, dicomgen.make(patient=4, patient_id="CSERR")) == 0xA700
    ids = [p["MainDicomTags"]["PatientID"] for p in filtering.client().get("/patients?expand").json()]
    assert ids == ["KEEP"]


def test_filter_arguments(make_server: Any, tmp_path: Path) -> None:
    script = tmp_path / "args.lua"
    script.write_text(
        "function ReceivedInstanceFilter(tags, origin, info)\n"
        "  local f = io.open('" + str(tmp_path / "seen.json") + "', 'a')\n"
        "  f:write(DumpJson({tags.PatientID, origin, info, tags.Rows}), '\\n') f:close() return true\nend\n"
    )
    srv = make_server({"LuaScripts": [str(script)]})
    srv.client().upload(dicomgen.make(patient=1, patient_id="P1", rows=4, columns=4))
    line = json.loads((tmp_path / "seen.json").read_text().splitlines()[0])
    assert line[0] == "P1" and line[3] == 4  # DumpJson turns numeric strings into numbers
    assert line[1] == {"RemoteIp": "127.0.0.1", "RequestOrigin": "RestApi", "Username": ""}
    assert line[2] == {"HasPixelData": True, "TransferSyntaxUID": "1.2.840.10008.1.2.1"}


def test_incoming_http_request_filter(make_server: Any) -> None:
    srv = make_server({**LUA, "AuthenticationEnabled": True, "RegisteredUsers": {"alice": "pw"}})
    c = srv.client(auth=("alice", "pw"))
    run(
        c,
        """
        calls = {}
        function IncomingHttpRequestFilter(method, uri, ip, username, headers)
           local probe = tostring(headers['x-probe'])
           table.insert(calls, method .. ' ' .. uri .. ' ' .. ip .. ' ' .. username .. ' ' .. probe)
           if uri == '/tools/execute-script' then return true end
           return method ~= 'DELETE' and uri ~= '/statistics'
        end
        """,
    )
    assert c.get("/system?x=1", headers={"X-Probe": "p1"}).status == 200
    assert c.get("//patients/").status == 200
    assert c.get("/statistics").status == 403
    r = c.delete("/patients/whatever")
    assert (r.status, r.body) == (403, b"")
    # the REST calls of Lua are not filtered (Orthanc calls its API in-process)
    assert run(c, "print(RestApiGet('/statistics') ~= nil)") == "true\n"
    calls = printed(c, "calls")
    assert calls[:4] == [
        "GET /system 127.0.0.1 alice p1",
        "GET /patients/ 127.0.0.1 alice nil",
        "GET /statistics 127.0.0.1 alice nil",
        "DELETE /patients/whatever 127.0.0.1 alice nil",
    ]
    # a filter that fails refuses nothing silently: an error answer, and the server stays up
    run(c, "function IncomingHttpRequestFilter(method, uri) if uri == '/system' then error('oops') end return true end")
    assert c.get("/system").status == 500
    assert c.get("/statistics").status == 200


# --- callbacks -----------------------------------------------------------------------------


def test_on_stored_instance_arguments_and_errors(lua: Any) -> None:
    run(
        lua,
        """
        seen = {}
        function OnStoredInstance(instanceId, tags, metadata, origin)
           table.insert(seen, DumpJson({instanceId, tags.PatientID, metadata.Origin, metadata.RemoteIP,
                                        metadata.TransferSyntax, metadata.HttpUsername, origin.RequestOrigin}))
           if tags.PatientID == 'BOOM' then error('callback failed') end
        end
        """,
    )
    a = lua.upload(dicomgen.make(patient=1, patient_id="P1"))
    again = lua.upload(dicomgen.make(patient=1, patient_id="P1"))
    assert again["Status"] == "AlreadyStored"
    boom = lua.upload(dicomgen.make(patient=2, patient_id="BOOM"))
    assert boom["Status"] == "Success"  # a failing callback loses nothing
    seen = wait_for(lambda: (lambda s: s if len(s) == 3 else None)(printed(lua)))
    first = json.loads(seen[0])
    assert first == [a["ID"], "P1", "RestApi", "127.0.0.1", "1.2.840.10008.1.2.1", "", "RestApi"]
    assert json.loads(seen[1])[0] == a["ID"]  # Orthanc calls it for AlreadyStored too
    assert lua.get(f"/instances/{boom['ID']}").status == 200
    assert run(lua, "print('alive')") == "alive\n"


def test_autorouting_send_then_delete(make_server: Any, scp: Any) -> None:
    srv = make_server({**LUA, "DicomModalities": {"target": ["STORESCP", "127.0.0.1", scp.port]}})
    c = srv.client()
    run(
        c,
        """
        jobs = {}
        function OnStoredInstance(instanceId, tags, metadata, origin)
           Delete(SendToModality(instanceId, 'target'))
        end
        function OnJobSubmitted(id) table.insert(jobs, 'submitted') end
        function OnJobSuccess(id) table.insert(jobs, 'success ' .. ParseJson(RestApiGet('/jobs/' .. id)).State) end
        function OnJobFailure(id) table.insert(jobs, 'failure') end
        """,
    )
    for i in range(3):
        c.upload(dicomgen.make(patient=1, instance=i))
    wait_for(lambda: len(scp.received) == 3 and c.get("/instances").json() == [])
    # the burst went in one job (Orthanc's Lua job manager), which ends 5 s after its last operation
    jobs = wait_for(lambda: (lambda j: j if "success Success" in j else None)(printed(c, "jobs")), timeout=15)
    assert jobs == ["submitted", "success Success"]


@pytest.mark.skipif(not Path("/usr/bin/storescp").exists(), reason="DCMTK's storescp is not installed")
def test_autorouting_to_dcmtk_storescp(make_server: Any, tmp_path: Path) -> None:
    """Orthanc's classic auto-routing script, to DCMTK's storescp: each stored instance arrives
    there byte for byte in its data set."""
    import subprocess

    from tests.conftest import free_port

    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    storescp = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "DCMTK", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        srv = make_server({**LUA, "DicomModalities": {"dcmtk": ["DCMTK", "127.0.0.1", port]}})
        c = srv.client()
        run(c, "function OnStoredInstance(instanceId) SendToModality(instanceId, 'dcmtk') end")
        sent = [dicomgen.make(patient=7, instance=i, rows=8, columns=8) for i in range(3)]
        for data in sent:
            c.upload(data)
        wait_for(lambda: len(list(received.iterdir())) == 3, timeout=20)
        time.sleep(0.2)  # storescp writes each file as it receives it
        got = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in received.iterdir()}
        for data in sent:
            ds = pydicom.dcmread(io.BytesIO(data))
            assert got[ds.SOPInstanceUID].PixelData == ds.PixelData
            assert got[ds.SOPInstanceUID].PatientName == ds.PatientName
    finally:
        storescp.terminate()
        storescp.wait(10)


def test_modify_send_and_delete_chain(make_server: Any, scp: Any) -> None:
    srv = make_server({**LUA, "DicomModalities": {"target": ["STORESCP", "127.0.0.1", scp.port]}})
    c = srv.client()
    run(
        c,
        """
        function OnStoredInstance(instanceId, tags, metadata, origin)
           if metadata.ModifiedFrom == nil then
              local replace = { StationName = 'Lua Station' }
              Delete(SendToModality(ModifyInstance(instanceId, replace, { 'InstitutionName' }, true), 'target'))
              Delete(instanceId)
           end
        end
        """,
    )
    original = c.upload(dicomgen.make(patient=1))
    wait_for(lambda: len(scp.received) == 1 and c.get("/instances").json() == [])
    sent = pydicom.dcmread(io.BytesIO(next(iter(scp.received.values()))), force=True)
    assert sent.StationName == "Lua Station" and "InstitutionName" not in sent
    assert original["ID"] not in c.get("/instances").json()


def test_on_stable_and_on_deleted(make_server: Any) -> None:
    c = make_server({**LUA, "StableAge": 0.5}).client()
    run(
        c,
        """
        seen = {}
        function OnStableSeries(id, tags, metadata)
           table.insert(seen, 'series ' .. tags.Modality .. ' ' .. metadata.LastUpdate:sub(1, 2))
        end
        function OnStableStudy(id, tags, metadata)
           table.insert(seen, 'study ' .. tostring(tags.PatientID) .. ' ' .. tags.StudyDescription)
        end
        function OnStablePatient(id, tags, metadata) table.insert(seen, 'patient ' .. tags.PatientID) end
        function OnDeletedInstance(id) table.insert(seen, 'deleted instance') end
        function OnDeletedSeries(id) table.insert(seen, 'deleted series') end
        function OnDeletedStudy(id) table.insert(seen, 'deleted study') end
        function OnDeletedPatient(id) table.insert(seen, 'deleted patient ' .. id) end
        """,
    )
    a = c.upload(dicomgen.make(patient=1, modality="MR", study_description="Brain"))
    stable = wait_for(lambda: (lambda s: s if len(s) == 3 else None)(printed(c)))
    # the study's tags are its own (no PatientID), as Orthanc gives them
    assert stable == ["series MR 20", "study nil Brain", "patient PID00001"]
    assert c.delete(f"/patients/{a['ParentPatient']}").status == 200
    done = wait_for(lambda: (lambda s: s if len(s) == 7 else None)(printed(c)))
    assert done[3:] == ["deleted instance", "deleted series", "deleted study", f"deleted patient {a['ParentPatient']}"]


def test_heartbeat_and_finalize(make_server: Any, tmp_path: Path) -> None:
    marker = tmp_path / "finalized.txt"
    script = tmp_path / "beat.lua"
    script.write_text(
        "beats = 0\nfunction OnHeartBeat() beats = beats + 1 end\n"
        f"function Finalize() local f = io.open('{marker}', 'w') f:write('bye ' .. beats) f:close() end\n"
    )
    srv = make_server({**LUA, "LuaScripts": [str(script)], "LuaHeartBeatPeriod": 0.2})
    c = srv.client()
    wait_for(lambda: int(run(c, "print(beats)")) >= 2)
    srv.stop()
    assert marker.read_text().startswith("bye ")


def test_incoming_find_request_filter(make_server: Any) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

    srv = make_server(
        {
            **LUA,
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "DicomAlwaysAllowFind": True,
        }
    )
    c = srv.client()
    c.upload(dicomgen.make(patient=1, patient_id="REAL", study_description="Real"))
    c.upload(dicomgen.make(patient=2, patient_id="OTHER", study_description="Other"))
    run(
        c,
        """
        function IncomingFindRequestFilter(query, origin)
           seen = DumpJson({query['0010,0020'], origin.RemoteAet, origin.CalledAet, origin.Manufacturer})
           query['0010,0020'] = 'REAL'
           query['StudyDescription'] = ''
           return query
        end
        """,
    )
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", srv.ctx.dicom_port, ae_title="ORTHANCPY")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "OTHER"
    answers = [ds for st, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind) if ds]
    assoc.release()
    assert [(a.PatientID, a.StudyDescription) for a in answers] == [("REAL", "Real")]
    assert json.loads(run(c, "print(seen)")) == ["OTHER", "FINDSCU", "ORTHANCPY", "Generic"]


def test_outgoing_find_request_filter(make_server: Any) -> None:
    remote = make_server(
        {"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "REMOTE", "DicomAlwaysAllowFind": True}
    )
    remote.client().upload(dicomgen.make(patient=1, patient_id="WANTED"))
    remote.client().upload(dicomgen.make(patient=2, patient_id="NOTWANTED"))
    c = make_server({**LUA, "DicomModalities": {"remote": ["REMOTE", "127.0.0.1", remote.ctx.dicom_port]}}).client()
    run(
        c,
        """
        function OutgoingFindRequestFilter(query, aet)
           called = aet
           query['0010,0020'] = 'WANTED'
           return query
        end
        """,
    )
    r = c.post("/modalities/remote/query", {"Level": "Study", "Query": {"PatientID": "*"}})
    assert r.status == 200, r.body
    answers = c.get(f"{r.json()['Path']}/answers?expand").json()
    assert [a["0010,0020"]["Value"] for a in answers] == ["WANTED"]
    assert run(c, "print(called)") == "REMOTE\n"


def test_on_stored_instance_tags_read_every_way(lua: Any) -> None:
    """The tags are filled when first read (core/lua/state.LuaState.lazy): pairs, DumpJson and
    PrintRecursive see them all, like indexing."""
    run(
        lua,
        """
        function OnStoredInstance(instanceId, tags)
           local n = 0
           for k, v in pairs(tags) do n = n + 1 end
           local copy = tags
           seen = { n, ParseJson(DumpJson(copy)).PatientID, tags.Modality }
        end
        """,
    )
    lua.upload(dicomgen.make(patient=7, patient_id="P7", modality="MR"))
    seen = wait_for(lambda: (lambda s: s if s else None)(printed(lua)))
    assert seen[0] > 20 and seen[1:] == ["P7", "MR"]


# --- what Orthanc's sample scripts do, with scripts of our own -----------------------------


def test_routing_on_tags_and_system_calls(make_server: Any, scp: Any, tmp_path: Path) -> None:
    """Route by a tag, delete the rest; CallSystem runs a command on a copy of the file."""
    srv = make_server({**LUA, "DicomModalities": {"target": ["STORESCP", "127.0.0.1", scp.port]}})
    c = srv.client()
    copies = tmp_path / "copies"
    copies.mkdir()
    run(
        c,
        f"""
        function OnStoredInstance(instanceId, tags, metadata, origin)
           if string.find(string.lower(tags.PatientName), 'route') then
              Delete(SendToModality(instanceId, 'target'))
           else
              Delete(CallSystem(instanceId, 'sh', {{ '-c', 'cp "$0" {copies}/' .. tags.PatientID .. '.dcm' }}))
           end
        end
        """,
    )
    c.upload(dicomgen.make(patient=1, patient_name="Route^Me"))
    c.upload(dicomgen.make(patient=2, patient_id="KEPT", patient_name="Other^One"))
    wait_for(lambda: len(scp.received) == 1 and c.get("/instances").json() == [])
    copy = wait_for(lambda: list(copies.glob("*.dcm")))
    assert [p.name for p in copy] == ["KEPT.dcm"]
    assert pydicom.dcmread(copy[0]).PatientName == "Other^One"


def test_rest_modify_reupload_and_metadata_from_sequences(lua: Any) -> None:
    """A modified copy made through RestApiPost, uploaded again (origin Lua, so the callback
    leaves it alone), the original deleted; a value found deep in the sequences becomes
    metadata."""
    run(
        lua,
        """
        function Find(t, name)
           for k, v in pairs(t) do
              if k == name then return v end
              if type(v) == 'table' then local found = Find(v, name) if found then return found end end
           end
        end
        function OnStoredInstance(instanceId, tags, metadata, origin)
           if origin.RequestOrigin ~= 'Lua' then
              local request = { Replace = { OtherPatientIDsSequence = { { PatientID = 'A' }, { PatientID = 'B' } } } }
              local modified = RestApiPost('/instances/' .. instanceId .. '/modify', DumpJson(request, true))
              local copy = ParseJson(RestApiPost('/instances/', modified)).ID
              RestApiPut('/instances/' .. copy .. '/metadata/2000', Find(tags, 'CodeValue'))
              RestApiDelete('/instances/' .. instanceId)
           end
        end
        """,
    )
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=3)))
    code = pydicom.Dataset()
    code.CodeValue = "113838"
    code.CodingSchemeDesignator = "DCM"
    outer = pydicom.Dataset()
    outer.ConceptNameCodeSequence = [code]
    ds.ContentSequence = [outer]
    buf = io.BytesIO()
    ds.save_as(buf)
    original = lua.upload(buf.getvalue())["ID"]

    def copied() -> Any:
        ids = lua.get("/instances").json()
        return ids if len(ids) == 1 and ids[0] != original else None

    (copy,) = wait_for(copied)
    tags = lua.get(f"/instances/{copy}/tags?simplify").json()
    assert [x["PatientID"] for x in tags["OtherPatientIDsSequence"]] == ["A", "B"]
    assert lua.get(f"/instances/{copy}/metadata/Origin").body == b"Lua"
    assert wait_for(lambda: lua.get(f"/instances/{copy}/metadata/2000").body == b"113838")


def test_on_updated_callbacks(lua: Any) -> None:
    """Orthanc 1.10.1's OnUpdated{Patient,Study,Series,Instance}: a metadata or an attachment
    changed."""
    run(
        lua,
        """
        seen = {}
        function OnUpdatedInstance(id) table.insert(seen, 'instance') end
        function OnUpdatedStudy(id) table.insert(seen, 'study') end
        """,
    )
    a = lua.upload(dicomgen.make(patient=1))
    assert lua.put(f"/instances/{a['ID']}/metadata/1024", "x").status == 200
    assert lua.put(f"/studies/{a['ParentStudy']}/attachments/1025", "y").status == 200
    assert lua.delete(f"/instances/{a['ID']}/metadata/1024").status == 200
    assert wait_for(lambda: printed(lua) == ["instance", "study", "instance"])


def test_association_release_waits_for_the_callbacks_of_its_instances(make_server: Any) -> None:
    """When a C-STORE peer is told its association is released, the OnStoredInstance calls of
    what it sent have run (Orthanc's test_lua_deadlock reads their result right after storescu
    returns); a callback that takes too long holds the release RELEASE_WAIT seconds at most."""
    from orthanc_py.core.lua.scripting import RELEASE_WAIT

    srv = make_server({**LUA, "DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"})
    c = srv.client()
    run(
        c,
        """
        function OnStoredInstance(instanceId, tags)
           if tags.PatientID == 'SLOW' then os.execute('sleep 3') end
           os.execute('sleep 0.3')
           RestApiPut('/instances/' .. instanceId .. '/metadata/1024', 'done')
        end
        """,
    )
    port = srv.ctx.dicom_port
    a = c_store(port, dicomgen.make(patient=1))
    assert a == 0
    iid = c.get("/instances").json()[0]
    assert c.get(f"/instances/{iid}/metadata/1024").body == b"done"
    start = time.monotonic()
    assert c_store(port, dicomgen.make(patient=2, patient_id="SLOW")) == 0
    assert RELEASE_WAIT - 0.5 < time.monotonic() - start < RELEASE_WAIT + 1.5


def test_requests_do_not_wait_for_queued_events(lua: Any) -> None:
    """A filter or /tools/execute-script waits for the callback running now, not for the events
    queued behind it (Orthanc's callers take its Lua lock, they do not join its event queue)."""
    run(
        lua,
        """
        function OnStoredInstance(instanceId) os.execute('sleep 0.4') end
        function IncomingHttpRequestFilter(method, uri) return true end
        """,
    )
    for i in range(6):
        lua.upload(dicomgen.make(patient=1, instance=i))  # about 2.4 s of queued callbacks
    start = time.monotonic()
    assert lua.get("/system").status == 200
    assert run(lua, "print('now')") == "now\n"
    assert time.monotonic() - start < 1.5
