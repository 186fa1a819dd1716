"""Storage commitment reports: Orthanc's JSON, its Status rule and the least-recently-used bound."""

from __future__ import annotations

from orthanc_py.core.commitment_reports import Report, StorageCommitmentReports, describe, new_transaction_uid


def test_report_json_and_status() -> None:
    pending = Report("PEER")
    assert pending.to_json() == {"RemoteAET": "PEER", "Status": "Pending"}
    done = Report("PEER", True, [("1.2", "1.3")], [])
    assert done.to_json() == {
        "RemoteAET": "PEER",
        "Status": "Success",
        "Success": [{"SOPClassUID": "1.2", "SOPInstanceUID": "1.3"}],
        "Failures": [],
    }
    failed = Report("PEER", True, [], [("1.2", "1.4", 0x0213)])
    assert failed.status == "Failure"
    assert failed.to_json()["Failures"][0]["FailureReason"] == 531
    assert describe(0x0213).startswith("The SCP does not currently have enough resources")
    assert describe(0x0131) == "The Transaction UID of the Storage Commitment Request is already in use"
    assert describe(7) == "Unknown failure reason"


def test_least_recently_used_go_first() -> None:
    reports = StorageCommitmentReports(2)
    reports.store("a", Report("X"))
    reports.store("b", Report("X"))
    assert reports.get("a") is not None  # "a" is now the most recent
    reports.store("c", Report("X"))
    assert reports.get("b") is None and reports.get("a") is not None and reports.get("c") is not None
    reports.store("c", Report("Y", True))  # replaced, not duplicated
    assert reports.get("c").remote_aet == "Y" and reports.get("a") is not None
    unlimited = StorageCommitmentReports(0)
    for n in range(500):
        unlimited.store(str(n), Report("X"))
    assert unlimited.get("0") is not None


def test_transaction_uids() -> None:
    uid = new_transaction_uid()
    assert uid.startswith("2.25.") and uid[5:].isdigit() and len(uid) <= 64 and uid != new_transaction_uid()
