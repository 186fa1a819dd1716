"""The DICOM network node as SCP (pynetdicom): C-ECHO and C-STORE into the one ingest path."""
