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
UPDATE metadata SET value = (SELECT CAST(s.id AS TEXT) FROM signatures s WHERE s.value = metadata.value) WHERE type = 15;
-- 4. the DICOMweb change feed: the "create" entry of an instance still stored names it by
--    internal id (its UIDs and public id are the instance's own rows); the entry takes copies
--    of them when the instance is deleted, so entries outlive their instance as before
CREATE TABLE changefeed_compact (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    resource_id INTEGER,
    study_uid TEXT,
    series_uid TEXT,
    sop_uid TEXT,
    instance_id TEXT,
    timestamp TEXT NOT NULL
);
INSERT INTO changefeed_compact(seq, action, state, resource_id, study_uid, series_uid, sop_uid, instance_id, timestamp)
    SELECT f.seq, f.action, f.state, r.id,
        CASE WHEN r.id IS NULL THEN f.study_uid END, CASE WHEN r.id IS NULL THEN f.series_uid END,
        CASE WHEN r.id IS NULL THEN f.sop_uid END, CASE WHEN r.id IS NULL THEN f.instance_id END, f.timestamp
    FROM changefeed f LEFT JOIN resources r ON r.public_id = f.instance_id AND r.level = 4
        AND f.action = 'create' AND f.state = 'current'
        AND f.sop_uid = COALESCE((SELECT t.value FROM tags t WHERE t.resource_id = r.id AND t.tag = 524312), '')
        AND f.series_uid = COALESCE((SELECT t.value FROM tags t WHERE t.resource_id = r.parent_id AND t.tag = 2097166), '')
        AND f.study_uid = COALESCE((SELECT t.value FROM resources s JOIN tags t ON t.resource_id = s.parent_id AND t.tag = 2097165 WHERE s.id = r.parent_id), '')
    ORDER BY f.seq;
DELETE FROM sqlite_sequence WHERE name = 'changefeed_compact';
INSERT INTO sqlite_sequence(name, seq) SELECT 'changefeed_compact', seq FROM sqlite_sequence WHERE name = 'changefeed';
DROP TABLE changefeed;
ALTER TABLE changefeed_compact RENAME TO changefeed;
CREATE INDEX changefeed_resource ON changefeed(resource_id) WHERE resource_id IS NOT NULL;
CREATE INDEX changefeed_instance ON changefeed(instance_id) WHERE instance_id IS NOT NULL
