-- The schema SQLite's migrations 1 to 8 reach, written for PostgreSQL in one step (there is no
-- earlier PostgreSQL index to upgrade). Differences that matter:
-- * every text compares byte by byte (COLLATE "C"), as in SQLite, whatever the database's
--   locale: the order of public ids, labels and ranges of DICOM values must not change;
-- * keys handed out by sequences (BIGSERIAL: resources_id_seq, changes_seq_seq, ...), shared by
--   every server writing to the database (Dialect.new_id, Dialect.last_sequence);
-- * a resource's parent must exist at commit (a deferred foreign key): a server deleting a
--   study while another stores an instance into it makes one of the two commits fail, and the
--   writer runs it again (index.writer), instead of leaving an instance without its study.
CREATE TABLE resources (
    id BIGSERIAL PRIMARY KEY,
    level INTEGER NOT NULL,
    public_id TEXT COLLATE "C" NOT NULL UNIQUE,
    parent_id BIGINT REFERENCES resources(id) DEFERRABLE INITIALLY DEFERRED,
    main_tags BYTEA NOT NULL
);
CREATE INDEX resources_parent ON resources(parent_id, id);
CREATE INDEX resources_level ON resources(level, id);
CREATE TABLE tags (
    resource_id BIGINT NOT NULL,
    tag BIGINT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    norm TEXT COLLATE "C",
    PRIMARY KEY (resource_id, tag)
);
CREATE INDEX tags_value ON tags(tag, value);
CREATE INDEX tags_norm ON tags(tag, norm) WHERE norm IS NOT NULL;
CREATE TABLE metadata (
    resource_id BIGINT NOT NULL,
    type INTEGER NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resource_id, type)
);
CREATE TABLE attachments (
    resource_id BIGINT NOT NULL,
    content_type INTEGER NOT NULL,
    uuid TEXT COLLATE "C" NOT NULL,
    compressed_size BIGINT NOT NULL,
    uncompressed_size BIGINT NOT NULL,
    compression INTEGER NOT NULL,
    uncompressed_md5 TEXT COLLATE "C" NOT NULL,
    compressed_md5 TEXT COLLATE "C" NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resource_id, content_type)
);
CREATE INDEX attachments_compressed ON attachments(compression) WHERE compression <> 1;
CREATE TABLE labels (
    resource_id BIGINT NOT NULL,
    label TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (resource_id, label)
);
CREATE INDEX labels_label ON labels(label);
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
    change_type INTEGER NOT NULL,
    level INTEGER NOT NULL,
    resource_id BIGINT NOT NULL,
    date TEXT COLLATE "C" NOT NULL
);
CREATE INDEX changes_resource ON changes(resource_id);
CREATE TABLE exports (
    seq BIGSERIAL PRIMARY KEY,
    level INTEGER NOT NULL,
    public_id TEXT COLLATE "C" NOT NULL,
    remote_modality TEXT COLLATE "C" NOT NULL,
    patient_id TEXT COLLATE "C" NOT NULL,
    study_uid TEXT COLLATE "C" NOT NULL,
    series_uid TEXT COLLATE "C" NOT NULL,
    sop_uid TEXT COLLATE "C" NOT NULL,
    date TEXT COLLATE "C" NOT NULL
);
CREATE TABLE properties (key TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL);
CREATE TABLE protected (resource_id BIGINT PRIMARY KEY);
-- the DICOMweb change feed: an instance still stored is named by internal id
CREATE TABLE changefeed (
    seq BIGSERIAL PRIMARY KEY,
    action TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    resource_id BIGINT,
    study_uid TEXT COLLATE "C",
    series_uid TEXT COLLATE "C",
    sop_uid TEXT COLLATE "C",
    instance_id TEXT COLLATE "C",
    timestamp TEXT COLLATE "C" NOT NULL
);
CREATE INDEX changefeed_resource ON changefeed(resource_id) WHERE resource_id IS NOT NULL;
CREATE INDEX changefeed_instance ON changefeed(instance_id) WHERE instance_id IS NOT NULL;
-- extended query tags (Azure DICOM); their values live in `tags` like main tags
CREATE TABLE ext_tags (
    key BIGSERIAL PRIMARY KEY,
    tag BIGINT NOT NULL,
    private_creator TEXT COLLATE "C" NOT NULL DEFAULT '',
    vr TEXT COLLATE "C" NOT NULL,
    level INTEGER NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    query_status TEXT COLLATE "C" NOT NULL,
    operation TEXT COLLATE "C",
    error_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tag, private_creator)
);
CREATE TABLE ext_errors (
    key BIGINT NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    study_uid TEXT COLLATE "C" NOT NULL,
    series_uid TEXT COLLATE "C" NOT NULL,
    sop_uid TEXT COLLATE "C" NOT NULL,
    created TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key, instance_id)
);
-- MainDicomTagsSignature stored once; metadata rows hold the number of its row (as text)
CREATE TABLE signatures (id BIGSERIAL PRIMARY KEY, value TEXT COLLATE "C" NOT NULL UNIQUE);
-- SaveJobs
CREATE TABLE jobs (id TEXT COLLATE "C" PRIMARY KEY, data TEXT COLLATE "C" NOT NULL);
-- recycling order of the patients (protected ones have no row)
CREATE TABLE recycling (resource_id BIGINT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE INDEX recycling_seq ON recycling(seq);
-- the total size of the attachments, kept by triggers (one UPDATE per statement, from the
-- statement's transition tables: a multi-row INSERT of a group commit updates the row once)
CREATE TABLE totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    compressed BIGINT NOT NULL,
    uncompressed BIGINT NOT NULL
);
INSERT INTO totals(id, compressed, uncompressed) VALUES (0, 0, 0);
CREATE FUNCTION orthanc_py_totals_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM added_rows) THEN RETURN NULL; END IF;
    UPDATE totals SET compressed = compressed + s.c, uncompressed = uncompressed + s.u
        FROM (SELECT COALESCE(SUM(compressed_size), 0) AS c, COALESCE(SUM(uncompressed_size), 0) AS u
              FROM added_rows) AS s
        WHERE id = 0;
    RETURN NULL;
END $$;
CREATE FUNCTION orthanc_py_totals_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed_rows) THEN RETURN NULL; END IF;
    UPDATE totals SET compressed = compressed - s.c, uncompressed = uncompressed - s.u
        FROM (SELECT COALESCE(SUM(compressed_size), 0) AS c, COALESCE(SUM(uncompressed_size), 0) AS u
              FROM removed_rows) AS s
        WHERE id = 0;
    RETURN NULL;
END $$;
CREATE FUNCTION orthanc_py_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
    UPDATE totals SET compressed = compressed + s.c, uncompressed = uncompressed + s.u
        FROM (SELECT COALESCE(SUM(n.compressed_size), 0) - COALESCE((SELECT SUM(compressed_size) FROM old_rows), 0) AS c,
                     COALESCE(SUM(n.uncompressed_size), 0) - COALESCE((SELECT SUM(uncompressed_size) FROM old_rows), 0) AS u
              FROM new_rows n) AS s
        WHERE id = 0;
    RETURN NULL;
END $$;
CREATE TRIGGER totals_attachment_added AFTER INSERT ON attachments
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT EXECUTE FUNCTION orthanc_py_totals_added();
CREATE TRIGGER totals_attachment_removed AFTER DELETE ON attachments
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT EXECUTE FUNCTION orthanc_py_totals_removed();
CREATE TRIGGER totals_attachment_changed AFTER UPDATE ON attachments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orthanc_py_totals_changed()
