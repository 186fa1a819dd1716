"""orthanc_py: a DICOM archive server compatible with Orthanc's REST API and DICOM behaviour."""

__version__ = "0.1.0"

ORTHANC_VERSION = "1.12.10"
"""The Orthanc release whose REST API we implement (clients switch features on /system Version)."""

ORTHANC_API_VERSION = 29
"""Orthanc's `ApiVersion` for that release (1.12.5 reported 26, 1.12.11 reports 30). Clients and
Orthanc's own tests switch behaviour on it: >= 26 means DS values are strings in DICOM JSON
(model.decimaljson)."""

DATABASE_VERSION = 6
"""Orthanc's database schema version reported by /system (our own migrations are separate)."""
