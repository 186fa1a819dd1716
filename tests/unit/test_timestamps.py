"""Timestamps formatted once per second must read exactly as the per-call formatting did."""

from __future__ import annotations

import datetime

from orthanc_py.core import context, ingest


def test_now_iso_is_orthancs_local_time_format(monkeypatch):
    for t in (1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.0):
        monkeypatch.setattr(context.time, "time", lambda t=t: t)
        expected = datetime.datetime.fromtimestamp(int(t)).strftime("%Y%m%dT%H%M%S")
        assert context.now_iso() == expected


def test_feed_timestamps_match_isoformat(monkeypatch):
    for ns in (
        1_700_000_000_123_456_000,
        1_700_000_000_999_999_000,
        1_700_000_001_000_000_000,
        1_700_000_001_000_001_000,
    ):
        monkeypatch.setattr(ingest.time, "time_ns", lambda ns=ns: ns)
        expected = datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).replace(microsecond=(ns // 1000) % 1_000_000)
        assert ingest._feed_now() == expected.isoformat()
