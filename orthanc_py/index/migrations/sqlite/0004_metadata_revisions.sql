-- revisions of metadata (ETag / If-Match, as Orthanc 1.9.2+); compressed attachments are
-- found at once (a partial index: rows of uncompressed files, the default, never enter it)
ALTER TABLE metadata ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attachments_compressed ON attachments(compression) WHERE compression <> 1;
