-- The engine's durable state. Version 8 (`migrate.rs` upgrades older databases).
--
-- An event is stored when it is accepted; processing it records one `runs` row per route
-- handler and turns the handler's actions into `outbox` rows, in the same transaction that
-- marks the event processed. Delivering an outbox row records one `attempts` row per try. A
-- failed run or a delivery that gives up leaves a `dead_letters` row, which can be replayed.

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- acceptance order
    id           TEXT    NOT NULL UNIQUE,
    route        TEXT    NOT NULL,                   -- `bus:<type>` or `webhook:<path>`
    dedupe_key   TEXT    UNIQUE,                     -- route + the sender's idempotency key
    event_type   TEXT    NOT NULL,
    origin       TEXT    NOT NULL,
    entity_key   TEXT,
    version      INTEGER,
    timestamp    INTEGER NOT NULL,                   -- Unix ms
    content_type TEXT    NOT NULL,
    headers      TEXT    NOT NULL,                   -- JSON [[name, value], ...]
    accepted_at  INTEGER NOT NULL,                   -- Unix ms
    processed_at INTEGER,                            -- NULL while some handler has yet to run
    generation   INTEGER NOT NULL DEFAULT 0,         -- bumped by each replay of a failed run
    hops         INTEGER NOT NULL DEFAULT 0,         -- systems the update crossed before this one
    path         TEXT    NOT NULL DEFAULT ''         -- those systems, comma-separated, oldest first
);
CREATE INDEX events_pending ON events (route, seq) WHERE processed_at IS NULL;
CREATE INDEX events_dedupe_age ON events (seq) WHERE dedupe_key IS NOT NULL;
-- The admin API's search: by entity key (newest first), by acceptance time.
CREATE INDEX events_key ON events (entity_key, seq) WHERE entity_key IS NOT NULL;
CREATE INDEX events_accepted ON events (accepted_at);

-- Each event's payload, apart from the event's row: marking an event processed rewrites only
-- its small row, never a large payload.
CREATE TABLE payloads (
    event_seq INTEGER PRIMARY KEY REFERENCES events (seq),
    payload   BLOB    NOT NULL
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL REFERENCES events (id),
    handler     INTEGER NOT NULL,                    -- index of the handler among the route's
    plugin      TEXT    NOT NULL,
    plugin_hash TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,                    -- `ok`, `no-route`, `engine-error` or the
                                                     -- plugin's error code
    error       TEXT,
    duration_us INTEGER NOT NULL,
    ran_at      INTEGER NOT NULL,
    replayed_at INTEGER                              -- set when a failed run is replayed
);
CREATE INDEX runs_event ON runs (event_id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT    NOT NULL REFERENCES events (id),
    event_seq        INTEGER NOT NULL,               -- the event's acceptance order
    run_id           INTEGER NOT NULL REFERENCES runs (id),
    kind             TEXT    NOT NULL,               -- `deliver`, `emit` or `drop`
    target           TEXT    NOT NULL,               -- destination name or event type ('' for drops)
    idempotency_key  TEXT    NOT NULL UNIQUE,
    origin           TEXT    NOT NULL,
    content_type     TEXT    NOT NULL,
    headers          TEXT    NOT NULL,               -- JSON [[name, value], ...]
    body             BLOB    NOT NULL,
    entity_key       TEXT,
    version          INTEGER,
    timestamp        INTEGER NOT NULL,
    hops             INTEGER NOT NULL DEFAULT 0,     -- sent as `hms-hops`
    path             TEXT    NOT NULL DEFAULT '',    -- sent as `hms-path`
    conflict         TEXT    NOT NULL DEFAULT 'none', -- the route's conflict strategy
    resolver         TEXT,                           -- for the `plugin` strategy
    state            TEXT    NOT NULL,               -- `pending`, `delivered`, `dead`, `dropped`,
                                                     -- `superseded`
    superseded_by    TEXT,                           -- the event whose version won
    reason           TEXT,                           -- why it was not sent: the drop reason, an
                                                     -- echo, the hop limit, or superseded
    attempts         INTEGER NOT NULL DEFAULT 0,     -- every attempt ever made
    round_attempts   INTEGER NOT NULL DEFAULT 0,     -- attempts since it was queued or replayed
    round_started_at INTEGER NOT NULL,               -- when it was queued or replayed (Unix ms)
    next_attempt_at  INTEGER NOT NULL,               -- Unix ms
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
-- The pending rows of each lane (a destination, or `hms-core` for emitted events) in the order
-- the dispatcher loads them: by event acceptance order.
CREATE INDEX outbox_lane ON outbox ((CASE kind WHEN 'emit' THEN 'hms-core' ELSE target END),
    event_seq, id) WHERE state = 'pending';
CREATE INDEX outbox_event ON outbox (event_id);
CREATE INDEX outbox_run ON outbox (run_id);
-- The pending rows of one (kind, target, key) a delivered version makes stale, found by range:
-- for last-write-wins those with an earlier (timestamp, event, row), for version those with a
-- version no greater. Rows without a strategy are in neither.
CREATE INDEX outbox_stale_lww ON outbox (kind, target, entity_key, timestamp, event_id, id)
    WHERE state = 'pending' AND conflict = 'last-write-wins';
CREATE INDEX outbox_stale_version ON outbox (kind, target, entity_key, version)
    WHERE state = 'pending' AND conflict = 'version';

-- Conflict state: per (kind, target, entity key), what was last delivered. Written in the
-- transaction that records the delivery's success.
CREATE TABLE entity_state (
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    entity_key      TEXT    NOT NULL,
    version         INTEGER,
    timestamp       INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    outbox_id       INTEGER NOT NULL,                 -- the last tie-breaker of last-write-wins
    content_type    TEXT    NOT NULL,
    body            BLOB,                             -- kept for resolvers (`plugin` strategy)
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (kind, target, entity_key)
) WITHOUT ROWID;

-- What shadow versions made of events, beside the active version's runs (which alone count).
CREATE TABLE shadow_runs (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL REFERENCES events (id),
    handler     INTEGER NOT NULL,
    plugin      TEXT    NOT NULL,
    shadow_hash TEXT    NOT NULL,
    active_hash TEXT    NOT NULL,
    verdict     TEXT    NOT NULL,                    -- `same`, `different` or `failed`
    changes     TEXT,                                -- JSON Patch operations, with the values
                                                     -- they replace
    error       TEXT,
    duration_us INTEGER NOT NULL,
    ran_at      INTEGER NOT NULL
);
CREATE INDEX shadow_runs_event ON shadow_runs (event_id);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    attempt     INTEGER NOT NULL,                    -- 1, 2, ... over the row's whole life
    started_at  INTEGER NOT NULL,                    -- Unix ms
    duration_ms INTEGER NOT NULL,
    status      INTEGER,                             -- HTTP status; NULL when no response came
    error       TEXT,
    outcome     TEXT    NOT NULL                     -- `delivered`, `retry` or `dead`
);
CREATE INDEX attempts_outbox ON attempts (outbox_id);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,                    -- `delivery` or `plugin`
    event_id    TEXT    NOT NULL REFERENCES events (id),
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    outbox_id   INTEGER REFERENCES outbox (id),      -- for `delivery`
    target      TEXT    NOT NULL,                    -- destination (`hms-core` for emits) or plugin
    error       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT    NOT NULL,                    -- `dead` or `replayed`
    replayed_at INTEGER
);
CREATE INDEX dead_letters_state ON dead_letters (state, created_at);
CREATE INDEX dead_letters_event ON dead_letters (event_id);
CREATE INDEX dead_letters_refs ON dead_letters (run_id, outbox_id);
CREATE INDEX dead_letters_outbox ON dead_letters (outbox_id);

-- One row, rewritten by readiness checks to prove the store takes writes.
CREATE TABLE probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);

-- When the store is a replica of a log (the NATS backend): which log, and the position of the
-- last entry applied, written in the same transaction as the entry's write.
CREATE TABLE replica (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    log      TEXT    NOT NULL,
    position INTEGER NOT NULL
);

-- Every version of every plugin the engine has been given (by its configuration, the admin API
-- or the watched directory), by content hash, and every activation: the active version of a
-- plugin is its last activation.
CREATE TABLE plugin_versions (
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL,                     -- SHA-256 of the component, hex
    world       TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    component   BLOB    NOT NULL,
    fixtures    TEXT,                                 -- JSON, when it came with fixtures
    uploaded_at INTEGER NOT NULL,
    uploaded_by TEXT    NOT NULL,                     -- `config`, `watch`, or the admin token's id
    PRIMARY KEY (name, hash)
) WITHOUT ROWID;

CREATE TABLE plugin_activations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    activated_at INTEGER NOT NULL,
    activated_by TEXT    NOT NULL,
    reason       TEXT    NOT NULL                     -- `config`, `upload`, `watch`, `activate`, `rollback`
);
CREATE INDEX plugin_activations_name ON plugin_activations (name, id);
