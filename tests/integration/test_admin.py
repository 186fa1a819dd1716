"""/tools (list), log levels, Prometheus metrics and /plugins, as Orthanc answers them."""

from __future__ import annotations

import logging

import dicomgen


def test_tools_list_and_plugins(client):
    tools = client.get("/tools").json()
    assert {"find", "lookup", "now", "log-level", "metrics-prometheus", "dicom-echo"} <= set(tools)
    assert tools == sorted(tools)
    assert client.get("/plugins").json() == ["explorer.js", "dicom-web"]
    web = client.get("/plugins/dicom-web").json()
    assert web["ID"] == "dicom-web" and "DICOMweb" in web["Description"]
    assert web["Version"] == "1.20"  # the plugin whose behaviour /dicom-web follows (needs Orthanc 1.12.5)
    js = client.get("/plugins/explorer.js")
    assert js.status == 200 and js.headers["content-type"] == "application/javascript"
    assert client.get("/plugins/nope").status == 404


def test_log_levels(client):
    from orthanc_py.rest.admin import LOG_CATEGORIES

    names = [name for names in LOG_CATEGORIES.values() for name in names]
    saved = {name: logging.getLogger(name).level for name in names}  # the server shares our process
    try:
        assert client.get("/tools/log-level").body == b"default"
        assert client.put("/tools/log-level-http", "trace").status == 200
        assert logging.getLogger("orthanc_py.http").getEffectiveLevel() == logging.DEBUG
        assert client.get("/tools/log-level-http").body == b"trace"
        assert client.get("/tools/log-level-dicom").body == b"default"
        assert client.get("/tools/log-level").body == b"trace"  # the most verbose category
        assert client.put("/tools/log-level", "verbose").status == 200
        assert client.get("/tools/log-level-http").body == b"verbose"
        assert logging.getLogger("pynetdicom").getEffectiveLevel() == logging.INFO
        bad = client.put("/tools/log-level", "loud")
        assert bad.status == 400 and bad.json()["OrthancStatus"] == 3
        assert client.put("/tools/log-level", "default").status == 200
        assert logging.getLogger("orthanc_py.dimse").getEffectiveLevel() == logging.WARNING
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_prometheus_metrics(client):
    client.upload(dicomgen.make(patient=0, instance=0, rows=8, columns=8))
    client.upload(dicomgen.make(patient=0, instance=1, rows=8, columns=8))
    assert client.get("/tools/metrics").body == b"1"
    r = client.get("/tools/metrics-prometheus")
    assert r.headers["content-type"] == "text/plain; version=0.0.4"
    values = {line.split()[0]: float(line.split()[1]) for line in r.body.decode().splitlines()}
    assert values["orthanc_count_instances"] == 2 and values["orthanc_count_patients"] == 1
    assert values["orthanc_disk_size_mb"] > 0 and values["orthanc_jobs_running"] == 0
    assert client.put("/tools/metrics", "0").status == 200
    assert client.get("/tools/metrics").body == b"0"
    assert client.get("/tools/metrics-prometheus").body == b""
    bad = client.put("/tools/metrics", "maybe")
    assert bad.status == 400 and bad.json()["OrthancStatus"] == 15
