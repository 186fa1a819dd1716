"""POST /studies/{id}/split and /merge: new studies and series built from copies of the
instances, with Orthanc's answers, job contents and errors."""

from __future__ import annotations

import io
import time

import dicomgen
import pydicom


def _upload_study(client, patient: int, study: int, series: int, instances: int) -> list[dict]:
    out = []
    for s in range(series):
        for i in range(instances):
            data = dicomgen.make(patient=patient, study=study, series=s, instance=i, rows=4, columns=4)
            out.append(client.upload(data))
    return out


def _dataset(client, instance: str) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(client.get(f"/instances/{instance}/file").body))


def _wait(client, job: str) -> dict:
    for _ in range(500):
        info = client.get(f"/jobs/{job}").json()
        if info["State"] in ("Success", "Failure"):
            return info
        time.sleep(0.01)
    raise AssertionError("job did not finish")


def test_split_series_into_a_new_study(client):
    ups = _upload_study(client, patient=1, study=1, series=2, instances=2)
    study, moved, kept = ups[0]["ParentStudy"], ups[2]["ParentSeries"], ups[0]["ParentSeries"]
    before = _dataset(client, ups[2]["ID"])
    r = client.post(
        f"/studies/{study}/split",
        {"Series": [moved], "Replace": {"PatientName": "Split^Me"}, "Remove": ["ReferringPhysicianName"]},
    )
    assert r.status == 200, r.body
    answer = r.json()
    assert set(answer) == {"Description", "FailedInstancesCount", "InstancesCount", "TargetStudy", "TargetStudyUID"}
    assert answer["Description"] == "REST API" and answer["InstancesCount"] == 2
    assert answer["FailedInstancesCount"] == 0
    target = answer["TargetStudy"]
    assert sorted(client.get("/studies").json()) == sorted([study, target])
    # the source series is gone (KeepSource false by default), the other one stays
    assert client.get(f"/studies/{study}").json()["Series"] == [kept]
    assert client.get(f"/series/{moved}").status == 404
    info = client.get(f"/studies/{target}").json()
    assert info["MainDicomTags"]["StudyInstanceUID"] == answer["TargetStudyUID"]
    assert "ReferringPhysicianName" not in info["MainDicomTags"]
    assert info["PatientMainDicomTags"]["PatientName"] == "Split^Me"
    assert len(info["Series"]) == 1
    new_series = client.get(f"/series/{info['Series'][0]}").json()
    assert len(new_series["Instances"]) == 2
    copies = {int(d.InstanceNumber): d for d in (_dataset(client, i) for i in new_series["Instances"])}
    after = copies[int(before.InstanceNumber)]
    assert after.StudyInstanceUID == answer["TargetStudyUID"]
    assert after.SeriesInstanceUID != before.SeriesInstanceUID
    assert after.SOPInstanceUID != before.SOPInstanceUID
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.PatientID == before.PatientID and after.StudyDate == before.StudyDate
    assert after.PixelData == before.PixelData
    # both new instances share one new series UID
    assert len({d.SeriesInstanceUID for d in copies.values()}) == 1
    jobs = client.get("/jobs?expand").json()  # a synchronous request runs as a job too
    assert [(j["Type"], j["State"], j["Content"]) for j in jobs] == [("SplitStudy", "Success", answer)]
    meta = client.get(f"/instances/{new_series['Instances'][0]}/metadata?expand").json()
    assert meta["Origin"] == "RestApi" and "ModifiedFrom" not in meta


def test_split_instances_keep_source_and_job(client):
    ups = _upload_study(client, patient=2, study=1, series=1, instances=3)
    study, series = ups[0]["ParentStudy"], ups[0]["ParentSeries"]
    r = client.post(f"/studies/{study}/split", {"Instances": [ups[0]["ID"]], "KeepSource": True, "Asynchronous": True})
    assert r.status == 200
    job = r.json()
    assert set(job) == {"ID", "Path"} and job["Path"] == f"/jobs/{job['ID']}"
    info = _wait(client, job["ID"])
    assert info["State"] == "Success" and info["Type"] == "SplitStudy" and info["Progress"] == 100
    assert info["Content"]["InstancesCount"] == 1
    target = info["Content"]["TargetStudy"]
    assert len(client.get(f"/series/{series}").json()["Instances"]) == 3  # sources kept
    assert len(client.get(f"/studies/{target}/instances").json()) == 1
    assert len(client.get("/instances").json()) == 4


def test_split_errors(client):
    ups = _upload_study(client, patient=3, study=1, series=1, instances=1)
    study = ups[0]["ParentStudy"]
    other = _upload_study(client, patient=4, study=1, series=1, instances=1)[0]

    def post(body, sid=study):
        return client.post(f"/studies/{sid}/split", body)

    r = post({"KeepSource": False})
    assert r.status == 400 and r.json()["OrthancError"] == "Bad request"
    assert r.json()["Details"] == 'Both the "Series" and the "Instances" fields are missing'
    assert post({"Series": [], "Instances": []}).status == 400
    assert post({"Series": ["nope"]}).status == 404
    assert post({"Instances": ["nope"]}).status == 404
    assert post({"Instances": [other["ID"]]}).status == 404  # not a child of the study
    assert post({"Series": [other["ParentSeries"]]}).status == 404
    r = post({"Series": "x"})
    assert r.status == 400 and r.json()["Details"] == "List of strings expected in field: Series"
    r = post({"Series": [ups[0]["ParentSeries"]], "Replace": {"Modality": "CT"}})
    assert r.status == 400 and r.json()["OrthancError"] == "Parameter out of range"
    assert r.json()["Details"] == (
        "Cannot modify the following tag while splitting a study (not in the patient/study modules): "
        "Modality (0008,0060)"
    )
    assert post({"Series": [ups[0]["ParentSeries"]], "Remove": ["StudyInstanceUID"]}).status == 400
    assert post({"Series": [ups[0]["ParentSeries"]], "Replace": {"PatientName": 3}}).status == 400
    assert post({"Series": [ups[0]["ParentSeries"]], "Remove": ["NoSuchTag"]}).status == 400
    assert post([1]).status == 400
    assert client.post(f"/studies/{study}/split", "not json").status == 400
    r = post({"Series": ["x"]}, sid="nope")
    assert r.status == 404 and r.json()["Details"] == "Cannot split unknown study nope"
    # nothing was done by the refused requests
    assert len(client.get("/instances").json()) == 2


def test_merge_study_into_another(client):
    target_ups = _upload_study(client, patient=5, study=1, series=1, instances=1)
    source_ups = _upload_study(client, patient=6, study=1, series=2, instances=2)
    target, source = target_ups[0]["ParentStudy"], source_ups[0]["ParentStudy"]
    reference = _dataset(client, target_ups[0]["ID"])
    r = client.post(f"/studies/{target}/merge", {"Resources": [source]})
    assert r.status == 200, r.body
    assert r.json() == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 4,
        "TargetStudy": target,
    }
    assert client.get("/studies").json() == [target]
    assert len(client.get("/patients").json()) == 1
    series = client.get(f"/studies/{target}").json()["Series"]
    assert len(series) == 3
    for sid in series:
        if sid == target_ups[0]["ParentSeries"]:
            continue
        instances = client.get(f"/series/{sid}").json()["Instances"]
        assert len(instances) == 2
        for iid in instances:
            ds = _dataset(client, iid)
            assert ds.StudyInstanceUID == reference.StudyInstanceUID
            assert ds.PatientID == reference.PatientID and ds.PatientName == reference.PatientName
            assert ds.AccessionNumber == reference.AccessionNumber
            assert ds.SeriesDescription == "Synthetic series"  # series tags are kept


def test_merge_instance_keep_source_async(client):
    target_ups = _upload_study(client, patient=7, study=1, series=1, instances=1)
    source_ups = _upload_study(client, patient=8, study=1, series=1, instances=2)
    target = target_ups[0]["ParentStudy"]
    r = client.post(
        f"/studies/{target}/merge", {"Resources": [source_ups[0]["ID"]], "KeepSource": True, "Synchronous": False}
    )
    info = _wait(client, r.json()["ID"])
    assert info["Type"] == "MergeStudy" and info["State"] == "Success"
    assert info["Content"]["TargetStudy"] == target and info["Content"]["InstancesCount"] == 1
    assert len(client.get("/instances").json()) == 4
    assert len(client.get(f"/studies/{target}/instances").json()) == 2


def test_merge_errors(client):
    a = _upload_study(client, patient=9, study=1, series=1, instances=1)[0]
    b = _upload_study(client, patient=10, study=1, series=1, instances=1)[0]
    target = a["ParentStudy"]

    def post(body, sid=target):
        return client.post(f"/studies/{sid}/merge", body)

    r = post({})
    assert r.status == 400 and r.json()["Details"] == "List of strings expected in field: Resources"
    assert post({"Resources": []}).json()["InstancesCount"] == 0
    r = post({"Resources": ["nope"]})
    assert r.status == 404 and r.json()["Details"] == "Cannot find this resource: nope"
    r = post({"Resources": [target]})
    assert r.status == 404 and r.json()["Details"] == f"Cannot merge a study into the same study: {target}"
    r = post({"Resources": [a["ParentSeries"]]})
    assert r.status == 404 and "into its parent study" in r.json()["Details"]
    r = post({"Resources": [b["ParentPatient"]]})
    assert r.status == 404 and r.json()["Details"].endswith("is a Patient")
    r = post({"Resources": ["x"]}, sid="nope")
    assert r.status == 404 and r.json()["Details"] == "Cannot merge into an unknown study: nope"
    assert post({"Resources": [b["ID"]], "Synchronous": "yes"}).status == 400
    assert len(client.get("/instances").json()) == 2


def test_split_job_failure_is_reported(make_server):
    server = make_server()
    client = server.client()
    ups = _upload_study(client, patient=11, study=1, series=1, instances=2)
    study, series = ups[0]["ParentStudy"], ups[0]["ParentSeries"]
    att = client.get(f"/instances/{ups[1]['ID']}/attachments/dicom/info").json()
    path = server.settings.storage_directory / att["Uuid"][:2] / att["Uuid"][2:4] / att["Uuid"]
    path.unlink()  # the file of one source instance is lost
    r = client.post(f"/studies/{study}/split", {"Series": [series]})
    assert r.status == 404
    details = r.json()["Details"]
    assert details == f"An instance was removed after the job was issued: {ups[1]['ID']}"
    [job] = client.get("/jobs?expand").json()
    assert (job["State"], job["ErrorCode"], job["ErrorDetails"]) == ("Failure", 17, details)
    assert client.get(f"/studies/{study}/instances").status == 200  # the sources are kept on failure
    assert len(client.get(f"/series/{series}").json()["Instances"]) == 2
    # "Permissive": the lost instance is counted, the others are split
    r = client.post(f"/studies/{study}/split", {"Series": [series], "Permissive": True, "KeepSource": True})
    assert r.status == 200 and r.json()["FailedInstancesCount"] == 1
    assert len(client.get(f"/studies/{r.json()['TargetStudy']}/instances").json()) == 1


def test_split_job_rebuilt_from_its_spec_makes_no_duplicate(make_server):
    """What SaveJobs/resubmit do: a job run again from its spec finds its copies stored."""
    import asyncio

    from orthanc_py.core import mergesplit

    server = make_server()
    client = server.client()
    ups = _upload_study(client, patient=12, study=1, series=1, instances=3)
    r = client.post(f"/studies/{ups[0]['ParentStudy']}/split", {"Series": [ups[0]["ParentSeries"]], "KeepSource": True})
    target = r.json()["TargetStudy"]
    copies = sorted(i["ID"] for i in client.get(f"/studies/{target}/instances").json())
    [job] = server.ctx.jobs.all()
    assert job.spec is not None and job.spec["Type"] == "SplitStudy"

    async def rerun() -> dict:
        again = server.ctx.jobs.submit("SplitStudy", mergesplit.make_runner(server.ctx, "SplitStudy", job.spec))
        await again.wait()
        return again.to_json()

    info = asyncio.run_coroutine_threadsafe(rerun(), server._loop).result(30)
    assert info["State"] == "Success" and info["Content"]["TargetStudy"] == target
    assert sorted(i["ID"] for i in client.get(f"/studies/{target}/instances").json()) == copies
    assert len(client.get("/instances").json()) == 6
