#!/usr/bin/env bash
# Runs a scheduler, a scrubber and a worker on this machine against the local PostgreSQL
# (database `regsweep`, created if missing). Ctrl-C stops both gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
db_url=${REGSWEEP_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/regsweep}
psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1 from pg_database where datname = 'regsweep'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database regsweep'
cargo build --release --bins
./target/release/regsweep-scheduler --database-url "$db_url" --listen 127.0.0.1:7070 &
scheduler=$!
./target/release/regsweep-scrubber --database-url "$db_url" --listen 127.0.0.1:7071 \
  --scheduler http://127.0.0.1:7070 --delay "${REGSWEEP_DELAY:-1h}" &
scrubber=$!
./target/release/regsweep-worker --scheduler http://127.0.0.1:7070 --scrubber http://127.0.0.1:7071 &
worker=$!
# Workers first (they drain), then the scrubber, then the scheduler.
trap 'kill -TERM $worker 2>/dev/null; wait $worker; kill -TERM $scrubber 2>/dev/null; wait $scrubber;
      kill -TERM $scheduler 2>/dev/null; wait $scheduler' INT TERM
echo "scheduler on http://127.0.0.1:7070, scrubber on http://127.0.0.1:7071; try: ./target/release/regsweep jobs create --kind sleep --args '{\"seconds\": 2}'" >&2
wait
