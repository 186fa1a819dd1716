-- Recycling (MaximumStorageSize, MaximumPatientCount), as Orthanc orders it:
-- 1. the patients that may be recycled, oldest first: a patient moves to the end each time one of
--    its instances is stored; protected patients have no row (they come back at the end when
--    unprotected). Existing patients are ordered by creation.
CREATE TABLE recycling (
    resource_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE INDEX recycling_seq ON recycling(seq);
INSERT INTO recycling(resource_id, seq)
    SELECT id, id FROM resources WHERE level = 1 AND id NOT IN (SELECT resource_id FROM protected) ORDER BY id;
-- 2. the total size of the attachments, kept by triggers: the storage check of every ingest
--    reads one row instead of summing the whole attachments table
CREATE TABLE totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    compressed INTEGER NOT NULL,
    uncompressed INTEGER NOT NULL
);
INSERT INTO totals(id, compressed, uncompressed)
    SELECT 0, COALESCE(SUM(compressed_size), 0), COALESCE(SUM(uncompressed_size), 0) FROM attachments;
CREATE TRIGGER totals_attachment_added AFTER INSERT ON attachments BEGIN
    UPDATE totals SET compressed = compressed + new.compressed_size,
        uncompressed = uncompressed + new.uncompressed_size WHERE id = 0;
END;
CREATE TRIGGER totals_attachment_removed AFTER DELETE ON attachments BEGIN
    UPDATE totals SET compressed = compressed - old.compressed_size,
        uncompressed = uncompressed - old.uncompressed_size WHERE id = 0;
END;
CREATE TRIGGER totals_attachment_changed AFTER UPDATE OF compressed_size, uncompressed_size ON attachments BEGIN
    UPDATE totals SET compressed = compressed - old.compressed_size + new.compressed_size,
        uncompressed = uncompressed - old.uncompressed_size + new.uncompressed_size WHERE id = 0;
END;
