-- extended query tags (Azure DICOM); their values live in `tags` like main tags
CREATE TABLE ext_tags (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    tag INTEGER NOT NULL,
    private_creator TEXT NOT NULL DEFAULT '',
    vr TEXT NOT NULL,
    level INTEGER NOT NULL,
    status TEXT NOT NULL,
    query_status TEXT NOT NULL,
    operation TEXT,
    error_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tag, private_creator)
);
CREATE TABLE ext_errors (
    key INTEGER NOT NULL,
    instance_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    created TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (key, instance_id)
) WITHOUT ROWID;
