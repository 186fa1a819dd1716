-- initial schema
CREATE TABLE resources (
    id INTEGER PRIMARY KEY,
    level INTEGER NOT NULL,
    public_id TEXT NOT NULL UNIQUE,
    parent_id INTEGER,
    main_tags BLOB NOT NULL
);
CREATE INDEX resources_parent ON resources(parent_id);
CREATE INDEX resources_level ON resources(level);
CREATE TABLE tags (
    resource_id INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    value TEXT NOT NULL,
    norm TEXT
);
CREATE INDEX tags_value ON tags(tag, value);
CREATE INDEX tags_norm ON tags(tag, norm) WHERE norm IS NOT NULL;
CREATE INDEX tags_resource ON tags(resource_id);
CREATE TABLE metadata (
    resource_id INTEGER NOT NULL,
    type INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (resource_id, type)
) WITHOUT ROWID;
CREATE TABLE attachments (
    resource_id INTEGER NOT NULL,
    content_type INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    compressed_size INTEGER NOT NULL,
    uncompressed_size INTEGER NOT NULL,
    compression INTEGER NOT NULL,
    uncompressed_md5 TEXT NOT NULL,
    compressed_md5 TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resource_id, content_type)
) WITHOUT ROWID;
CREATE TABLE labels (
    resource_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (resource_id, label)
) WITHOUT ROWID;
CREATE INDEX labels_label ON labels(label);
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change_type INTEGER NOT NULL,
    level INTEGER NOT NULL,
    public_id TEXT NOT NULL,
    date TEXT NOT NULL
);
CREATE INDEX changes_public_id ON changes(public_id);
CREATE TABLE exports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    level INTEGER NOT NULL,
    public_id TEXT NOT NULL,
    remote_modality TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    date TEXT NOT NULL
);
CREATE TABLE properties (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE protected (resource_id INTEGER PRIMARY KEY);
