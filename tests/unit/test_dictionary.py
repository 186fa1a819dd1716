"""The shipped DCMTK dictionary and the `Dictionary` configuration key."""

from __future__ import annotations

import glob
import gzip
import importlib.util
import sys
from pathlib import Path

import pytest

from orthanc_py.config import from_raw
from orthanc_py.model import dictionary as dictionary_module
from orthanc_py.model.dictionary import UNKNOWN_TAG_NAME, dcmtk

ROOT = Path(__file__).resolve().parents[2]


def test_names_as_dcmtk_and_orthanc_give_them():
    d = dcmtk()
    assert d.name(0x00100010) == "PatientName"
    assert d.name(0x00091001, "GEMS_IDEN_01") == "FullFidelity"  # pydicom: "Fullfidelity"
    assert d.name(0x00091101, "GEMS_IDEN_01") == "FullFidelity"  # any block of the creator
    assert d.name(0x00091001, "SOMEONE") == UNKNOWN_TAG_NAME
    assert d.name(0x00091001) == UNKNOWN_TAG_NAME  # private data element without a creator
    assert d.name(0x00090010) == "PrivateCreator"
    assert d.name(0x00090000) == "PrivateGroupLength"
    assert d.name(0x00080000) == "GenericGroupLength"
    assert d.name(0x60020010) == "OverlayRows"  # repeating group
    assert d.name(0x00101000) == "OtherPatientIDs"  # Orthanc's patch (DCMTK: RETIRED_OtherPatientIDs)
    assert d.name(0x00080080) == "InstitutionName"  # not DICONDE's CompanyName
    assert d.vr(0x00280106) == "xs"
    assert d.tag_of("PatientName") == 0x00100010
    assert d.tag_of("NoSuchName") is None


def test_user_entries():
    d = dcmtk().with_entries(
        {"00e1,10c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"], "0011,1001": ["DS", "Score", 1, 1]},
        "Lunit",
    )
    assert d.name(0x00E110C2, "ELSCINT1") == "PET-CT Multi Modality Name"
    assert d.name(0x00111001, "Lunit") == "Score"
    assert d.vr(0x00111001, "Lunit") == "DS"
    assert d.tag_of("Score") == 0x00111001
    assert dcmtk().name(0x00111001, "Lunit") == UNKNOWN_TAG_NAME  # the base is left alone
    assert dcmtk().without_private().name(0x00091001, "GEMS_IDEN_01") == UNKNOWN_TAG_NAME
    with pytest.raises(ValueError):
        dcmtk().with_entries({"0011,10": ["DS", "Bad"]})
    with pytest.raises(ValueError):
        dcmtk().with_entries({"0011,1001": ["DSX", "Bad"]})


def test_configuration_keys(tmp_path):
    settings = from_raw({"Dictionary": {"0011,1001": ["DS", "Score", 1, 1]}, "DefaultPrivateCreator": "Me"}, tmp_path)
    assert settings.dictionary == {"0011,1001": ["DS", "Score", 1, 1]}
    assert settings.default_private_creator == "Me"
    with pytest.raises(ValueError):
        from_raw({"Dictionary": ["not", "an", "object"]}, tmp_path)


@pytest.mark.skipif(not glob.glob("/usr/share/libdcmtk*/dicom.dic"), reason="DCMTK's dictionary is not installed")
def test_shipped_table_is_what_the_generator_writes(tmp_path, monkeypatch):
    """scripts/gen_dcmtk_dictionary.py run on the installed DCMTK gives the committed module."""
    spec = importlib.util.spec_from_file_location("gen_dcmtk_dictionary", ROOT / "scripts" / "gen_dcmtk_dictionary.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_dcmtk_dictionary", gen)
    spec.loader.exec_module(gen)
    out = tmp_path / "dcmtk_dictionary.txt.gz"
    monkeypatch.setattr(gen, "OUT", out)
    gen.main(sorted(glob.glob("/usr/share/libdcmtk*"))[-1])
    shipped = Path(dictionary_module.__file__).with_name("dcmtk_dictionary.txt.gz")
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(shipped.read_bytes())
