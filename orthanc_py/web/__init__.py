"""aiohttp plumbing shared by the REST and DICOMweb interfaces: errors, auth, responses."""
