-- the DICOMweb change feed (instance creations and deletions, kept after deletes)
CREATE TABLE changefeed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE INDEX changefeed_instance ON changefeed(instance_id);
