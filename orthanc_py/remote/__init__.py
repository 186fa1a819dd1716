"""Outbound connections: DICOM SCU towards modalities (and, later, HTTP to Orthanc peers)."""
