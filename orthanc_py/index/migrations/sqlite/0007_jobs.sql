-- SaveJobs: the jobs of the jobs engine, one row each (its state, priority, spec and content as
-- JSON), so that pending, running and paused jobs are taken up again after a restart
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
) WITHOUT ROWID;
