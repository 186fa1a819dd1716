-- smaller rows for the same answers (bytes per instance at most Orthanc's):
-- 1. main tag values keyed by (resource, tag) in a table without rowid: the key is the
--    look-up of a resource's tags (ordering, deletion), so no separate index on resource_id
CREATE TABLE tags_compact (
    resource_id INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    value TEXT NOT NULL,
    norm TEXT,
    PRIMARY KEY (resource_id, tag)
) WITHOUT ROWID;
INSERT OR IGNORE INTO tags_compact(resource_id, tag, value, norm) SELECT resource_id, tag, value, norm FROM tags ORDER BY rowid;
DROP TABLE tags;
ALTER TABLE tags_compact RENAME TO tags;
CREATE INDEX tags_value ON tags(tag, value);
CREATE INDEX tags_norm ON tags(tag, norm) WHERE norm IS NOT NULL;
-- 2. the change log names its resource by internal id, as Orthanc's does (a change of a
--    deleted resource is deleted with it); the last sequence number handed out is kept
CREATE TABLE changes_compact (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change_type INTEGER NOT NULL,
    level INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    date TEXT NOT NULL
);
INSERT INTO changes_compact(seq, change_type, level, resource_id, date)
    SELECT c.seq, c.change_type, c.level, r.id, c.date FROM changes c JOIN resources r ON r.public_id = c.public_id ORDER BY c.seq;
DELETE FROM sqlite_sequence WHERE name = 'changes_compact';
INSERT INTO sqlite_sequence(name, seq) SELECT 'changes_compact', seq FROM sqlite_sequence WHERE name = 'changes';
DROP TABLE changes;
ALTER TABLE changes_compact RENAME TO changes;
CREATE INDEX changes_resource ON changes(resource_id);
-- 3. MainDicomTagsSignature (the same long text on every resource of a level) stored once:
--    the metadata row holds the number of its `signatures` row
CREATE TABLE signatures (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
INSERT INTO signatures(value) SELECT DISTINCT value FROM metadata WHERE type = 15 ORDER BY value;
UPDATE metadata SET value = (SELECT CAST(s.id AS TEXT) FROM signatures s WHERE s.value = metadata.value) WHERE type = 15
