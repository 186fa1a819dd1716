"""Core services: every Orthanc behaviour, independent of HTTP, DICOM networking and backends."""
