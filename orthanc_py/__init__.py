"""orthanc_py: a DICOM archive server compatible with Orthanc's REST API and DICOM behaviour."""

__version__ = "0.1.0"

ORTHANC_VERSION = "1.12.10"
"""The Orthanc release whose REST API we implement (clients switch features on /system Version)."""

ORTHANC_API_VERSION = 25
"""Orthanc's `ApiVersion` for that release."""

DATABASE_VERSION = 6
"""Orthanc's database schema version reported by /system (our own migrations are separate)."""
