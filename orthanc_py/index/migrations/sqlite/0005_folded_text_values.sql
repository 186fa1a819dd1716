-- case-insensitive /tools/find on every text VR (not only PN): the folded value of text
-- main tags, where it differs from the value (orthanc_fold is registered before migrating)
UPDATE tags SET norm = orthanc_fold(tag, value) WHERE norm IS NULL AND orthanc_fold(tag, value) IS NOT NULL;
