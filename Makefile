# The same commands CI runs (.ci/run calls `make ci`).
.PHONY: deps build test lint fmt clippy buf deploy long-functions ci run bench fuzz safety chaos

deps:
	scripts/deps.sh

build:
	cargo build --workspace --bins

# The service tests that run a second time with the services on SQLite:
# all but those that read PostgreSQL directly, run several schedulers or
# scrubbers on one database at once (a SQLite store serves one process, and
# refuses a second), or touch no store (the planner's model test). The
# store conformance suite runs on both stores in the first pass.
SQLITE_PASS = not (binary(plan_model) | test(conformance::) | test(dev::) | test(registry_client::) \
	| test(replicas::) | test(selection::) | test(migrate_only) | test(a_thousand_jobs) \
	| test(joblogs_gc_keeps) | test(bad_requests_are_refused) | test(bad_tag_sightings) \
	| test(restore_works_until_the_deletion_starts) | test(outage::) | test(chaos::) | test(plans::) \
	| test(an_interrupted_apply))

# The whole test suite: unit tests and integration tests against real
# PostgreSQL, SQLite, the real registry and the real service binaries.
test: deps build
	cargo nextest run --workspace --no-fail-fast
	REGSWEEP_TEST_STORE=sqlite cargo nextest run -p regsweep-integration-tests \
		--no-fail-fast -E '$(SQLITE_PASS)'

# The end-to-end safety runs at any size: random repository graphs and
# policies (the planner's property-test generator) pushed to the real
# registry and cleaned for real, the registry checked after each; then
# the same under racing pushes, scrubber SIGKILLs and registry restarts
# (`SAFETY_SEED=<hex>` replays one). `make test` runs a few of each, and
# one round of last checks behind rate-limit waits longer than the tag
# snapshot lives (SNAPSHOT_ROUNDS here).
SCENARIOS ?= 200
SNAPSHOT_ROUNDS ?= 8
safety: deps build
	SCENARIOS=$(SCENARIOS) SNAPSHOT_ROUNDS=$(SNAPSHOT_ROUNDS) \
		cargo nextest run -p regsweep-integration-tests --test it \
		-E 'test(image_graph::generated_repositories) | test(safety::) | test(scrubber::waits_longer_than_the_snapshot_ttl_still_delete)' \
		--no-capture

# The chaos suite at any size: two scheduler replicas and three workers
# on PostgreSQL draining JOBS jobs under worker and replica SIGKILLs,
# database outages, SIGSTOPped workers and cancels, then a checker over
# an audit of every status change (`CHAOS_SEED=<hex>` replays one).
# `make test` runs the default size.
JOBS ?= 250
chaos: deps build
	CHAOS_JOBS=$(JOBS) cargo nextest run -p regsweep-integration-tests --test it \
		-E 'test(chaos::)' --no-capture

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

buf: deps
	scripts/buf.sh lint

# Kubernetes manifests: schema validation, no cluster needed.
deploy: deps
	scripts/validate-deploy.sh

# No production function over 80 lines (the style's rule).
long-functions:
	scripts/long-functions.py

lint: fmt clippy buf deploy long-functions

ci: lint test

# A scheduler and a worker on the local PostgreSQL.
run:
	scripts/run-local.sh

bench: deps
	cargo build --release --bins
	./target/release/regsweep-bench queue

# Coverage-guided fuzzing of every target for FUZZ_SECONDS each, with
# cargo-fuzz on the nightly toolchain (not part of `make ci`: the
# sanitizer build alone takes minutes; `make test` runs every target on
# stable over the seeds and generated inputs). New inputs go to a copy of
# the corpus; crashes to fuzz/artifacts/.
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	rm -rf target/fuzz-corpus && cp -r fuzz/corpus target/fuzz-corpus
	for t in policy_fields tag_filter job_args registry_headers manifest durations; do \
		cargo +nightly fuzz run -O $$t target/fuzz-corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
