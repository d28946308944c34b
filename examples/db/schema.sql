-- Production schema read by `schedctl ingest` (default queries: jobshop_scheduler/data/queries.py).
-- Times are integers in one unit (minutes by convention), as in the request format.
-- A plant with other tables sets SCHEDULER_DB_QUERY_* instead (docs/data.md).

CREATE TABLE IF NOT EXISTS machines (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    name        VARCHAR(255) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS jobs (
    id           VARCHAR(64) NOT NULL PRIMARY KEY,
    release_time BIGINT      NOT NULL DEFAULT 0,   -- earliest start of the first operation
    due_date     BIGINT      NULL,                 -- NULL: no due date
    priority     INT         NOT NULL DEFAULT 1,   -- weight of the job's tardiness, >= 1
    CONSTRAINT jobs_release CHECK (release_time >= 0),
    CONSTRAINT jobs_priority CHECK (priority >= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A job's operations in precedence order (seq ascending); ids are unique within their job.
CREATE TABLE IF NOT EXISTS operations (
    job_id  VARCHAR(64) NOT NULL,
    id      VARCHAR(64) NOT NULL,
    seq     INT         NOT NULL,
    PRIMARY KEY (job_id, id),
    UNIQUE KEY operations_order (job_id, seq),
    CONSTRAINT operations_job FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The eligible machines of an operation, each with the operation's duration on it.
CREATE TABLE IF NOT EXISTS operation_machines (
    job_id       VARCHAR(64) NOT NULL,
    operation_id VARCHAR(64) NOT NULL,
    machine_id   VARCHAR(64) NOT NULL,
    duration     INT         NOT NULL,
    PRIMARY KEY (job_id, operation_id, machine_id),
    CONSTRAINT operation_machines_duration CHECK (duration > 0),
    CONSTRAINT operation_machines_operation FOREIGN KEY (job_id, operation_id)
        REFERENCES operations (job_id, id) ON DELETE CASCADE,
    CONSTRAINT operation_machines_machine FOREIGN KEY (machine_id) REFERENCES machines (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
