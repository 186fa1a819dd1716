"""JsonCpp's styled layout, as Orthanc 1.10.1 wrote a WebDAV `study.json` (recorded from it)."""

from __future__ import annotations

from orthanc_py.core.webdav import folder_name
from orthanc_py.core.webdav_files import mime_of
from orthanc_py.model.styledjson import quote, styled

RECORDED = (
    "{\n"
    '\t"ID" : "27f7126f-4f66fb14-03f4081b-f9341db2-53925988",\n'
    '\t"IsStable" : true,\n'
    '\t"MainDicomTags" : \n'
    "\t{\n"
    '\t\t"StudyDate" : "20061201",\n'
    '\t\t"StudyDescription" : "IRM c\\u00e9r\\u00e9brale, neuro-cr\\u00e2ne"\n'
    "\t},\n"
    '\t"Series" : \n'
    "\t[\n"
    '\t\t"2ac1316d-3e432022-62eabff2-c59f5475-9b1ac3f8",\n'
    '\t\t"1e2c125c-411b8e86-3f4fe68e-a7584dd3-c6da78f0"\n'
    "\t],\n"
    '\t"Type" : "Study"\n'
    "}\n"
)


def test_recorded_layout() -> None:
    value = {
        "Type": "Study",
        "ID": "27f7126f-4f66fb14-03f4081b-f9341db2-53925988",
        "IsStable": True,
        "MainDicomTags": {"StudyDescription": "IRM cérébrale, neuro-crâne", "StudyDate": "20061201"},
        "Series": ["2ac1316d-3e432022-62eabff2-c59f5475-9b1ac3f8", "1e2c125c-411b8e86-3f4fe68e-a7584dd3-c6da78f0"],
    }
    assert styled(value) == RECORDED


def test_empty_containers_nesting_and_escapes() -> None:
    text = styled({"a": [], "b": {}, "c": [{"k": None}, 2], "d": False})
    assert text == (
        '{\n\t"a" : [],\n\t"b" : {},\n\t"c" : \n\t[\n\t\t{\n\t\t\t"k" : null\n\t\t},\n\t\t2\n\t],\n\t"d" : false\n}\n'
    )
    assert quote('a"\\\n\x01/😀') == '"a\\"\\\\\\n\\u0001/\\ud83d\\ude00"'


def test_folder_names() -> None:
    tags = {0x00100020: "P/1", 0x00100010: "Jöhn\\Doe ", 0x00081030: "  "}
    assert folder_name("{{PatientID}} - {{PatientName}}", tags) == "P1 - JhnDoe"
    assert folder_name("{{PatientID}} - {{PatientName}} - {{StudyDescription}}", {}) == "-  -"
    assert folder_name("{{Nope}}x{{StudyDate}}", {}) == "x"
    assert mime_of("a.DCM") == "application/dicom" and mime_of("x.zip") == "application/zip"
    assert mime_of("noext") == mime_of(".hidden") == mime_of("a.bin") == mime_of("x.") == "application/octet-stream"
    assert mime_of(".zip") == "application/zip"  # boost::filesystem v3: the extension of ".zip"
