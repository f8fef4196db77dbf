-- Leadership, crons, and operator-set worker capacity.

-- One row per lease (e.g. 'leader'): held by one replica until it expires.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      uuid NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Capacity an operator set through SetWorkerCapacity ({"sleep": 1}); it
-- overrides what the worker declares for as long as the worker id lives.
ALTER TABLE workers ADD COLUMN capacity_override jsonb NOT NULL DEFAULT '{}';

CREATE TABLE crons (
    name         text PRIMARY KEY,
    schedule     text NOT NULL,
    kind         text NOT NULL,
    args         jsonb NOT NULL DEFAULT '{}',
    enabled      boolean NOT NULL DEFAULT true,
    priority     integer NOT NULL DEFAULT 0,
    next_fire_at timestamptz NOT NULL,
    last_fire_at timestamptz,
    last_job_id  bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The leader finds due crons without scanning them all.
CREATE INDEX crons_due ON crons (next_fire_at) WHERE enabled;

-- Retention deletes finished jobs oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE status IN ('done', 'error', 'cancel', 'deleted');
