# The same commands CI runs (.ci/run calls `make ci`).
.PHONY: deps build test lint fmt clippy buf deploy ci run bench

deps:
	scripts/deps.sh

build:
	cargo build --workspace --bins

# The whole test suite: unit tests and integration tests against real
# PostgreSQL and the real service binaries.
test: deps build
	cargo nextest run --workspace --no-fail-fast

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

buf: deps
	scripts/buf.sh lint

# Kubernetes manifests: schema validation, no cluster needed.
deploy: deps
	scripts/validate-deploy.sh

lint: fmt clippy buf deploy

ci: lint test

# A scheduler and a worker on the local PostgreSQL.
run:
	scripts/run-local.sh

bench: deps
	cargo build --release --bins
	./target/release/regsweep-bench queue
