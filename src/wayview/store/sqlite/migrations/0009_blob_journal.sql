-- wayview 0009: the blob journal. A job records the blob keys (or key prefixes ending in "/")
-- it is about to write before writing them; the entries go once the rows referencing them
-- are stored. A later attempt of a job whose worker died deletes what its owner journaled.
CREATE TABLE blob_journal (
    owner         TEXT NOT NULL,
    key           TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
