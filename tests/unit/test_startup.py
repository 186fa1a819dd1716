"""app.configure_libraries: every library-wide setting in one start-up function."""

from __future__ import annotations

import gc

import pydicom.config

from orthanc_py.app import configure_libraries, freeze_startup_objects
from orthanc_py.remote import dicomnet
from orthanc_py.remote.modalities import DicomScu


def test_library_settings_in_one_place():
    configure_libraries()
    configure_libraries()  # idempotent: the test harness and every server start call it
    assert pydicom.config.settings.reading_validation_mode == pydicom.config.IGNORE
    assert gc.get_threshold()[0] == 20_000
    before = gc.get_freeze_count()
    freeze_startup_objects()
    assert gc.get_freeze_count() >= max(before, 1)


def test_pynetdicom_tuned_before_the_first_association():
    scu = DicomScu("ORTHANC", 5.0)
    try:
        from pynetdicom import transport

        assert dicomnet._applied  # pynetdicom's faster recv and the stored-bytes encoder
        assert transport.AssociationSocket.recv is dicomnet._recv
        dicomnet.tune_pynetdicom()  # idempotent: the DICOM server's start calls it too
        assert transport.AssociationSocket.recv is dicomnet._recv
    finally:
        scu.close()
