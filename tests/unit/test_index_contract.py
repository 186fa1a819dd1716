"""The index contract: what core relies on from any `Index` backend (index/base.py).

Every backend of index/registry.py runs these, opened from the configuration the way app.py
opens it, on a real database (SQLite: a file in a temporary folder). A later backend (e.g.
PostgreSQL) adds itself to the registry and must pass them unchanged.
"""

from __future__ import annotations

import asyncio

import pytest

from orthanc_py.config import from_raw
from orthanc_py.index import registry
from orthanc_py.index.base import Attachment, ExportedResource, OrderBy, WholeLevel
from orthanc_py.model.enums import ResourceType
from orthanc_py.model.lookup import parse_constraint

P, ST, SE, IN = ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES, ResourceType.INSTANCE
PATIENT_ID, NAME, STUDY_UID, DATE, MODALITY, SOP = (
    0x00100020,
    0x00100010,
    0x0020000D,
    0x00080020,
    0x00080060,
    0x00080018,
)


@pytest.fixture(params=[b.name for b in registry.BACKENDS])
def index(request, tmp_path):
    backend = next(b for b in registry.BACKENDS if b.name == request.param)
    raw = {"StorageDirectory": str(tmp_path), "IndexDirectory": str(tmp_path)}
    if backend.section is not None:  # PostgreSQL: a fresh schema of the session's cluster
        raw[backend.section] = request.getfixturevalue(backend.name).section()
    settings = from_raw(raw)
    assert registry.select(settings) is backend
    idx = backend.open(settings)
    yield idx
    asyncio.run(idx.close())


def _tree(txn, n: int = 2) -> dict[str, int]:
    """One patient, two studies (one with two series), instances under each series."""
    ids = {"p": txn.create_resource("p", P, None, {PATIENT_ID: "PID", NAME: "DOE^JOHN"})}
    for s in range(n):
        ids[f"s{s}"] = txn.create_resource(
            f"s{s}", ST, ids["p"], {STUDY_UID: f"1.{s}", DATE: f"2020010{s + 1}", NAME: "DOE^JOHN", PATIENT_ID: "PID"}
        )
    ids["e0"] = txn.create_resource("e0", SE, ids["s0"], {MODALITY: "CT"})
    ids["e1"] = txn.create_resource("e1", SE, ids["s0"], {MODALITY: "MR"})
    ids["e2"] = txn.create_resource("e2", SE, ids["s1"], {MODALITY: "MR"})
    for k, series in enumerate(("e0", "e0", "e1", "e2")):
        ids[f"i{k}"] = txn.create_resource(f"i{k}", IN, ids[series], {SOP: f"9.{k}"})
        txn.add_attachment(ids[f"i{k}"], Attachment(1, f"uuid-{k}", 100 + k, 200 + k))
    return ids


def test_resources_and_their_tree(index):
    ids = index.write_blocking(_tree)

    def check(txn):
        assert txn.lookup("s1") == (ids["s1"], ST) and txn.lookup("nope") is None
        assert txn.lookup_many(["p", "i3", "nope"]) == {"p": (ids["p"], P), "i3": (ids["i3"], IN)}
        rows = txn.resources([ids["s1"], ids["s0"]])
        assert [r.public_id for r in rows] == ["s1", "s0"]  # in the order asked
        assert rows[0].parent_public_id == "p" and rows[0].main_tags[STUDY_UID] == "1.1"
        assert [r.public_id for r in txn.resources(WholeLevel(SE))] == ["e0", "e1", "e2"]
        assert txn.children([ids["s0"]]) == {ids["s0"]: [(ids["e0"], "e0"), (ids["e1"], "e1")]}
        assert txn.children(WholeLevel(IN)) == {ids[f"i{k}"]: [] for k in range(4)}
        assert sorted(txn.descendants(ids["p"], IN)) == sorted(ids[f"i{k}"] for k in range(4))
        assert txn.ancestor(ids["i3"], P) == ids["p"] and txn.ancestor(ids["p"], IN) is None
        assert txn.list_ids(IN) == [ids[f"i{k}"] for k in range(4)]
        assert txn.list_ids(IN, since=1, limit=2) == [ids["i1"], ids["i2"]]
        assert txn.list_public_ids(SE) == ["e0", "e1", "e2"]
        assert txn.list_public_ids(IN, since=1, limit=2) == ["i1", "i2"]
        assert txn.list_public_ids(IN, since=3, limit=0) == ["i3"]
        assert (txn.count(P), txn.count(ST), txn.count(SE), txn.count(IN)) == (1, 2, 3, 4)
        summary = txn.level_summary(ST, 1)
        assert [(r[1], r[2], r[4]) for r in summary] == [("s0", "p", ["e0", "e1"]), ("s1", "p", ["e2"])]
        stats = txn.resource_statistics(ids["s0"], ST)
        assert (stats["Series"], stats["Instance"], stats["disk"]) == (2, 3, 100 + 101 + 102)

    index.read_blocking(check)


def test_main_tags_are_replaced_with_their_searchable_values(index):
    ids = index.write_blocking(_tree)
    index.write_blocking(lambda txn: txn.set_main_tags(ids["e0"], {MODALITY: "US"}))
    us = parse_constraint(MODALITY, "US")
    ct = parse_constraint(MODALITY, "CT")
    assert index.read_blocking(lambda txn: (txn.find(SE, [us]), txn.find(SE, [ct]))) == ([ids["e0"]], [])


def test_find(index):
    ids = index.write_blocking(_tree)
    index.write_blocking(lambda txn: txn.add_label(ids["s1"], "b"))

    def check(txn):
        name = parse_constraint(NAME, "doe*", case_sensitive_pn=False)
        assert txn.find(P, [name]) == [ids["p"]]
        assert txn.find(ST, [name]) == [ids["s0"], ids["s1"]]  # patient tags of each study
        assert txn.find(ST, [parse_constraint(MODALITY, "CT")]) == [ids["s0"]]  # a lower level
        assert txn.find(IN, [parse_constraint(DATE, "20200102-")]) == [ids["i3"]]  # an upper level
        assert txn.find(SE, [], parent=ids["s0"]) == [ids["e0"], ids["e1"]]
        assert txn.find(SE, [], parent=10**9) == []
        assert txn.find(ST, [], labels=["b"]) == [ids["s1"]]
        assert txn.find(ST, [], labels=["b"], labels_mode="None") == [ids["s0"]]
        by_date = [OrderBy(DATE, None, False)]
        assert txn.find(ST, [], order_by=by_date) == [ids["s1"], ids["s0"]]
        assert txn.find(ST, [], order_by=by_date, since=1, limit=1) == [ids["s0"]]

    index.read_blocking(check)


def test_metadata_attachments_labels_properties_protection(index):
    ids = index.write_blocking(_tree)
    s0 = ids["s0"]

    def write(txn):
        txn.set_metadata(s0, 1024, "one", 2)
        txn.set_metadata_many([(s0, 1025, "two"), (ids["s1"], 1025, "three")])
        txn.add_attachment(s0, Attachment(1025, "u-att", 10, 30, 2, "m", "cm", 1))
        txn.set_attachment_md5(ids["i0"], 1, "uuid-0", "md5", "cmd5")
        txn.add_label(s0, "z")
        txn.add_label(s0, "a")
        txn.add_label(s0, "a")
        txn.set_property("k", "v")
        txn.set_protected(ids["p"], True)

    index.write_blocking(write)

    def check(txn):
        assert txn.metadata([s0]) == {s0: {1024: "one", 1025: "two"}}
        assert txn.metadata(WholeLevel(ST), [1025]) == {s0: {1025: "two"}, ids["s1"]: {1025: "three"}}
        assert txn.metadata_entry(s0, 1024) == ("one", 2) and txn.metadata_entry(s0, 9) is None
        assert txn.attachments([s0]) == {s0: [Attachment(1025, "u-att", 10, 30, 2, "m", "cm", 1)]}
        assert txn.attachments([ids["i0"]])[ids["i0"]][0].uncompressed_md5 == "md5"
        assert txn.any_compressed() is True
        assert txn.total_sizes() == (10 + 100 + 101 + 102 + 103, 30 + 200 + 201 + 202 + 203)
        assert txn.labels([s0]) == {s0: ["a", "z"]} and txn.all_labels() == ["a", "z"]
        assert txn.property("k") == "v" and txn.property("x") is None
        assert txn.is_protected(ids["p"]) and txn.protected_among([ids["p"], s0]) == {ids["p"]}
        study = txn.summary("s0", (1024, 9))
        assert study.row.id == s0 and study.row.level is ST and study.row.parent_public_id == "p"
        assert study.row.main_tags[STUDY_UID] == "1.0"
        assert (study.children, study.metadata, study.labels) == (["e0", "e1"], {1024: "one"}, ["a", "z"])
        assert study.dicom is None and study.is_protected is False
        patient = txn.summary("p", ())
        assert patient.is_protected is True and patient.metadata == {} and patient.labels == []
        assert patient.row.parent_public_id is None and patient.children == ["s0", "s1"]
        instance = txn.summary("i0", (1024,))
        assert instance.dicom == ("uuid-0", 200) and instance.children == []
        assert txn.summary("nope", ()) is None
        assert txn.attachment_of("i0", 1) == (ids["i0"], IN, txn.attachments([ids["i0"]])[ids["i0"]][0])
        assert txn.attachment_of("s0", 1) == (s0, ST, None) and txn.attachment_of("nope", 1) is None

    index.read_blocking(check)

    def undo(txn):
        assert txn.delete_metadata(s0, 1024) is True and txn.delete_metadata(s0, 1024) is False
        assert txn.delete_attachment(s0, 1025).uuid == "u-att" and txn.delete_attachment(s0, 1025) is None
        txn.remove_label(s0, "z")
        txn.set_protected(ids["p"], False)

    index.write_blocking(undo)
    assert index.read_blocking(lambda txn: (txn.labels([s0]), txn.is_protected(ids["p"]))) == ({s0: ["a"]}, False)


def test_changes_and_exports_logs(index):
    def write(txn):
        for pub, level in (("p", P), ("s", ST), ("i", IN)):  # a change names an existing resource
            txn.create_resource(pub, level, None, {})
        txn.log_change(1, P, "p", "20260101T000000")
        txn.log_change(1, P, "gone", "20260101T000000")  # not logged, as in Orthanc
        txn.log_changes([(2, ST, "s", "20260101T000001"), (3, IN, "i", "20260101T000002")])
        txn.log_export(ExportedResource(0, IN, "i", "MOD", "PID", "1", "2", "3", "20260101T000003"))

    index.write_blocking(write)

    def check(txn):
        assert [(c.seq, c.public_id) for c in txn.changes(0, 10)] == [(1, "p"), (2, "s"), (3, "i")]
        assert [c.seq for c in txn.changes(1, 1)] == [2]
        assert [c.seq for c in txn.changes_before(3, 10)] == [1, 2]
        assert txn.last_change() == 3
        assert [(e.seq, e.remote_modality) for e in txn.exports(0, 10)] == [(1, "MOD")] and txn.last_export() == 1

    index.read_blocking(check)
    index.write_blocking(lambda txn: (txn.clear_changes(), txn.clear_exports()))
    # a cleared log keeps its numbering (Orthanc's GetLastChangeIndex)
    assert index.read_blocking(lambda txn: (txn.changes(0, 10), txn.last_change(), txn.exports(0, 9))) == ([], 3, [])


def test_a_cascade_delete(index):
    ids = index.write_blocking(_tree)
    index.write_blocking(
        lambda txn: [
            txn.log_feed("create", "1.1", "", "9.3", "i3", "t0", replaces=False),  # (e2 has no series UID)
            txn.log_changes([(1, IN, "i3", "d"), (1, IN, "i0", "d")]),
        ]
    )
    entry = [1, "create", "current", "1.1", "", "9.3", "i3", "t0"]
    assert index.read_blocking(lambda txn: [list(r) for r in txn.feed(0, 10)]) == [entry]
    deletion = index.write_blocking(lambda txn: txn.delete_resource(ids["i3"]))
    # i3 was the only instance of e2, the only series of s1: both go; the patient stays
    assert sorted(pub for _lv, pub in deletion.deleted) == ["e2", "i3", "s1"]
    assert deletion.remaining_ancestor == (P, "p")
    assert [a.uuid for a in deletion.attachments] == ["uuid-3"]

    def check(txn):
        assert txn.lookup("s1") is None and txn.lookup("s0") is not None
        assert [c.public_id for c in txn.changes(0, 10)] == ["i0"]  # the log rows of deleted resources go
        assert [(r[1], r[2], r[6]) for r in txn.feed(0, 10)] == [
            ("create", "deleted", "i3"),
            ("delete", "deleted", "i3"),
        ]
        # the entries outlive the instance: its UIDs were copied into them before its rows went
        assert [list(r[3:6]) for r in txn.feed(0, 10)] == [["1.1", "", "9.3"]] * 2
        assert txn.feed_latest()[1] == "delete"

    index.read_blocking(check)
    last = index.write_blocking(lambda txn: txn.delete_resource(ids["p"]))
    assert last.remaining_ancestor is None and len(last.attachments) == 3
    assert index.read_blocking(lambda txn: [txn.count(lv) for lv in (P, ST, SE, IN)]) == [0, 0, 0, 0]


def test_extended_query_tags(index):
    ids = index.write_blocking(_tree)
    key = index.write_blocking(lambda txn: txn.add_ext_tag(0x00181030, "", "LO", 2, "op-1"))

    def more(txn):
        txn.update_ext_tag(key, status="Ready")
        txn.add_tag_values([(ids["e1"], 0x00181030, "Proto", "PROTO"), (ids["e1"], 0x00181030, "other", None)])
        txn.add_ext_errors(key, [("i0", "1", "2", "3", "2026", "bad")])

    index.write_blocking(more)
    rows = index.read_blocking(lambda txn: txn.ext_tags())
    assert [(r.key, r.status, r.error_count) for r in rows] == [(key, "Ready", 1)]
    proto = parse_constraint(0x00181030, "proto", case_sensitive_pn=False, any_text_vr=True)
    assert index.read_blocking(lambda txn: txn.find(SE, [proto])) == [ids["e1"]]  # the first value kept
    assert index.read_blocking(lambda txn: txn.ext_errors(key, 0, 10)) == [("1", "2", "3", "2026", "bad")]
    index.write_blocking(lambda txn: txn.delete_ext_tag(key, 0x00181030))
    assert index.read_blocking(lambda txn: (txn.ext_tags(), txn.find(SE, [proto]))) == ([], [])


def test_the_three_ways_to_write_and_failures_stay_their_own(index):
    """`write` (event loop), `write_blocking` and `write_soon` (worker threads) commit alike;
    a failing function leaves nothing and never undoes the writes committed with it."""

    def log(name: str, fail: bool = False):
        def fn(txn):
            txn.create_resource(name, IN, None, {})
            txn.log_changes([(1, IN, name, "d")])
            if fail:
                raise KeyError(name)
            return name

        return fn

    async def main():
        loop = asyncio.get_running_loop()
        soon = [loop.create_future() for _ in range(3)]
        for n, fut in enumerate(soon):
            await asyncio.to_thread(index.write_soon, log(f"soon{n}", fail=n == 1), fut)
        results = await asyncio.gather(
            index.write(log("loop")),
            index.write(log("loop-fail", fail=True)),
            asyncio.to_thread(index.write_blocking, log("blocking")),
            *soon,
            return_exceptions=True,
        )
        seen = await index.read(lambda txn: sorted(c.public_id for c in txn.changes(0, 100)))
        return results, seen

    results, seen = asyncio.run(main())
    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        "loop",
        "KeyError",
        "blocking",
        "soon0",
        "KeyError",
        "soon2",
    ]
    assert seen == ["blocking", "loop", "soon0", "soon2"]
