"""The fast read path of GET /{level}/{id} (one statement, run on the event loop) answers what
the general expansion answers, for every level and every field that depends on other rows."""

from __future__ import annotations

import asyncio

import dicomgen


def _upload(client, **kw: object) -> dict:
    return client.upload(dicomgen.make(rows=8, columns=8, **kw))


def _expanded(client, level: str, public_id: str) -> dict:
    """The same resource as an item of the expanded list (the bulk path)."""
    items = client.get(f"/{level}?expand").json()
    return next(i for i in items if i["ID"] == public_id)


def test_single_get_equals_expanded_list_item(client):
    first = _upload(client, patient=0, study=0, series=0, instance=0)
    _upload(client, patient=0, study=0, series=0, instance=1)
    _upload(client, patient=0, study=1, series=0, instance=0)
    # a series whose instances announce their count: Status is computed from IndexInSeries
    counted = [
        _upload(client, patient=1, study=0, series=0, instance=i, extra={"CardiacNumberOfImages": 3}) for i in range(2)
    ]
    assert client.put(f"/studies/{first['ParentStudy']}/labels/Zeta").status == 200
    assert client.put(f"/studies/{first['ParentStudy']}/labels/Alpha").status == 200
    assert client.put(f"/patients/{first['ParentPatient']}/protected", b"1").status == 200

    study = client.get(f"/studies/{first['ParentStudy']}").json()
    assert study["Labels"] == ["Alpha", "Zeta"]
    assert study == _expanded(client, "studies", first["ParentStudy"])

    patient = client.get(f"/patients/{first['ParentPatient']}").json()
    assert patient["IsProtected"] is True and len(patient["Studies"]) == 2  # as Orthanc 1.12.8+
    assert client.get(f"/patients/{first['ParentPatient']}/protected").body == b"1"
    assert patient == _expanded(client, "patients", first["ParentPatient"])

    series = client.get(f"/series/{first['ParentSeries']}").json()
    assert len(series["Instances"]) == 2
    assert series == _expanded(client, "series", first["ParentSeries"])

    missing = client.get(f"/series/{counted[0]['ParentSeries']}").json()
    assert missing["ExpectedNumberOfInstances"] == 3 and missing["Status"] == "Missing"
    assert missing == _expanded(client, "series", counted[0]["ParentSeries"])

    inst = client.get(f"/instances/{first['ID']}").json()
    assert inst["FileSize"] > 0 and inst["FileUuid"] and inst["IndexInSeries"] == 1
    assert inst == _expanded(client, "instances", first["ID"])


def test_single_get_of_another_level_or_unknown_is_a_bare_404(client):
    first = _upload(client)
    for path in (f"/studies/{first['ID']}", "/instances/nope", "/patients/" + "0" * 8 + "-0000000" * 4):
        r = client.get(path)
        assert r.status == 404 and r.body == b""


def test_server_runs_on_uvloop(server):
    """uvloop answers each request ~35 us sooner than asyncio's loop: a missing install would
    silently make every simple read slower."""
    import uvloop

    assert isinstance(server._loop, uvloop.Loop)
    assert not isinstance(server._loop, asyncio.SelectorEventLoop)
