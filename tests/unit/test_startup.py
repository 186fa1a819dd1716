"""app.configure_libraries: every library-wide setting in one start-up function."""

from __future__ import annotations

import gc

import pydicom.config

from orthanc_py.app import configure_libraries
from orthanc_py.remote import dicomnet


def test_library_settings_in_one_place():
    configure_libraries()
    configure_libraries()  # idempotent: the test harness and every server start call it
    assert pydicom.config.settings.reading_validation_mode == pydicom.config.IGNORE
    assert dicomnet._applied  # pynetdicom's faster recv and the stored-bytes encoder
    assert gc.get_threshold()[0] == 20_000
