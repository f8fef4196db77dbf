-- The stores' clock (services/common/src/clock.rs). In production both are
-- the database's own: store_now() is now(), the transaction's start, and
-- store_clock() is clock_timestamp(), the wall clock. A test sets the
-- connection's `regsweep.now` to a time of its choosing; store_clock() then
-- runs on from that time as the wall clock runs on from now().
--
-- store_now() is a STABLE SQL function, so it is inlined and an index
-- condition on it is evaluated once per scan, as one on now() is.
CREATE FUNCTION store_now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(current_setting('regsweep.now', true), '')::timestamptz, now())
$$;

CREATE FUNCTION store_clock() RETURNS timestamptz
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT store_now() + (clock_timestamp() - now())
$$;

-- Times a row gets when it is written follow the same clock.
ALTER TABLE workers ALTER COLUMN created_at SET DEFAULT store_now(),
                    ALTER COLUMN connected_at SET DEFAULT store_now(),
                    ALTER COLUMN last_heartbeat SET DEFAULT store_now();
ALTER TABLE jobs ALTER COLUMN scheduled_at SET DEFAULT store_now(),
                 ALTER COLUMN created_at SET DEFAULT store_now(),
                 ALTER COLUMN updated_at SET DEFAULT store_now();
ALTER TABLE job_logs ALTER COLUMN created_at SET DEFAULT store_now();
ALTER TABLE leases ALTER COLUMN acquired_at SET DEFAULT store_now();
ALTER TABLE crons ALTER COLUMN created_at SET DEFAULT store_now(),
                  ALTER COLUMN updated_at SET DEFAULT store_now();
ALTER TABLE registries ALTER COLUMN created_at SET DEFAULT store_now(),
                       ALTER COLUMN updated_at SET DEFAULT store_now();
ALTER TABLE policies ALTER COLUMN created_at SET DEFAULT store_now(),
                     ALTER COLUMN updated_at SET DEFAULT store_now();
ALTER TABLE repositories ALTER COLUMN created_at SET DEFAULT store_now();
