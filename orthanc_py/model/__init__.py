"""Pure DICOM/Orthanc model: levels, public IDs, main DICOM tags, parsing, renderings, lookups."""
