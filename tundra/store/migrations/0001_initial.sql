-- Schema v1: terminals, tasks + their events and agent runs, profile usage, audit log, settings.
-- Portable SQL for SQLite and MySQL/MariaDB/Dolt; {{AUTO_ID}} and {{TABLE_OPTIONS}} are filled
-- per engine. JSON values are stored as text. Times are float seconds since the epoch.

-- migrate:up
CREATE TABLE terminals (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    argv MEDIUMTEXT NOT NULL,
    cwd TEXT NOT NULL,
    pid BIGINT NULL,
    pgid BIGINT NULL,
    created_at DOUBLE NOT NULL,
    last_activity DOUBLE NOT NULL,
    term_rows INTEGER NOT NULL,
    term_cols INTEGER NOT NULL,
    persistent INTEGER NOT NULL,
    status VARCHAR(32) NOT NULL,
    disconnected_since DOUBLE NULL,
    exit_code INTEGER NULL,
    exit_signal INTEGER NULL,
    updated_at DOUBLE NOT NULL
){{TABLE_OPTIONS}};
CREATE INDEX terminals_status ON terminals (status);

CREATE TABLE tasks (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    title TEXT NOT NULL,
    prompt MEDIUMTEXT NOT NULL,
    repo TEXT NOT NULL,
    base_branch VARCHAR(255) NOT NULL,
    preset VARCHAR(128) NOT NULL,
    lane INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    requires_approval INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_secs DOUBLE NOT NULL,
    state VARCHAR(32) NOT NULL,
    attempts INTEGER NOT NULL,
    branch VARCHAR(255) NULL,
    worktree TEXT NULL,
    terminal_id VARCHAR(64) NULL,
    exit_code INTEGER NULL,
    result MEDIUMTEXT NULL,
    created_at DOUBLE NOT NULL,
    updated_at DOUBLE NOT NULL,
    started_at DOUBLE NULL,
    finished_at DOUBLE NULL,
    extra MEDIUMTEXT NOT NULL
){{TABLE_OPTIONS}};
CREATE INDEX tasks_state ON tasks (state, created_at);

CREATE TABLE task_events (
    id {{AUTO_ID}},
    uid VARCHAR(64) NOT NULL UNIQUE,
    task_id VARCHAR(64) NOT NULL,
    kind VARCHAR(64) NOT NULL,
    data MEDIUMTEXT NOT NULL,
    created_at DOUBLE NOT NULL,
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE
){{TABLE_OPTIONS}};
CREATE INDEX task_events_task ON task_events (task_id, id);

CREATE TABLE agent_runs (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    task_id VARCHAR(64) NOT NULL,
    attempt INTEGER NOT NULL,
    preset VARCHAR(128) NOT NULL,
    state VARCHAR(32) NOT NULL,
    terminal_id VARCHAR(64) NULL,
    pid BIGINT NULL,
    exit_code INTEGER NULL,
    exit_signal INTEGER NULL,
    error MEDIUMTEXT NULL,
    started_at DOUBLE NOT NULL,
    finished_at DOUBLE NULL,
    updated_at DOUBLE NOT NULL,
    extra MEDIUMTEXT NOT NULL,
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE
){{TABLE_OPTIONS}};
CREATE INDEX agent_runs_task ON agent_runs (task_id, attempt);

CREATE TABLE profile_usage (
    profile_id VARCHAR(255) NOT NULL PRIMARY KEY,
    data MEDIUMTEXT NOT NULL,
    updated_at DOUBLE NOT NULL
){{TABLE_OPTIONS}};

CREATE TABLE events (
    id {{AUTO_ID}},
    uid VARCHAR(64) NOT NULL UNIQUE,
    ts DOUBLE NOT NULL,
    topic VARCHAR(128) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    data MEDIUMTEXT NOT NULL
){{TABLE_OPTIONS}};
CREATE INDEX events_topic ON events (topic, id);
CREATE INDEX events_subject ON events (subject, id);

CREATE TABLE settings (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    value MEDIUMTEXT NOT NULL,
    updated_at DOUBLE NOT NULL
){{TABLE_OPTIONS}};

-- migrate:down
DROP TABLE IF EXISTS settings;
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS profile_usage;
DROP TABLE IF EXISTS agent_runs;
DROP TABLE IF EXISTS task_events;
DROP TABLE IF EXISTS tasks;
DROP TABLE IF EXISTS terminals;
