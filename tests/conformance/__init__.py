"""Conformance tests: orthanc_py replayed against answers recorded from the real Orthanc."""
