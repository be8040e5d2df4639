#!/usr/bin/env bash
# Runs every fxflow test on a fresh machine of our kind. It installs what the
# tests talk to when missing, starts the long-running services, and then runs
# `cargo test --workspace`:
#   - PostgreSQL and Redis (Debian packages; loopback trust; databases `test`
#     and `fxflow`) — scripts/services.sh;
#   - Apache Kafka's jars (Maven Central; each test starts its own broker) —
#     scripts/broker.sh fetch;
#   - OpenSearch's jars and our launcher (Maven Central; each test binary starts
#     its own node) — scripts/search.sh build;
#   - Chromium (Debian) and playwright-core (npm) for the live page's browser test;
#   - @kubernetes-models/keda (npm) for the KEDA ScaledObject schema check (scripts/crd-check);
#   - the Python checkers (PyPI): schemathesis, openapi-spec-validator and
#     openapi-python-client for the API's contract, aiosmtpd (the Email stage's
#     SMTP server, with an openssl-made certificate), and the deployment
#     checks' validators; promtool/Prometheus (Debian).
# Downloads are cached (.cache/, tests/browser/node_modules), so later runs
# start in seconds.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '==> %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
}

# Debian packages, installed in one go when any is missing.
ensure_packages() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return
    say "Installing ${missing[*]} (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The prometheus package starts its own server where it can; the tests start theirs.
    as_root sh -c 'pkill -x prometheus >/dev/null 2>&1 || true'
}

# Python tools in a virtual environment of our own, reinstalled only when the list changes.
ensure_python_tools() {
    local venv=$ROOT/.cache/venv want
    want=$(cat scripts/requirements-checks.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        say "Installing the Python checkers into $venv (PyPI, once)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-checks.txt
        echo "$want" >"$venv/.requirements.sha256"
    fi
    export PATH="$venv/bin:$PATH"
    export FXFLOW_PYTHON="$venv/bin/python"
}

# playwright-core for the browser test (no browser download: it drives Debian's Chromium).
ensure_browser_tools() {
    [ -f tests/browser/package.json ] || return 0
    local want
    want=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
    if [ "$(cat tests/browser/node_modules/.lock.sha256 2>/dev/null)" != "$want" ]; then
        say "Installing the browser test's npm packages (once)"
        (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
        echo "$want" >tests/browser/node_modules/.lock.sha256
    fi
}

# KEDA's ScaledObject schema (@kubernetes-models/keda) for check_deployment.py's KEDA overlay check.
ensure_crd_check_tools() {
    local want
    want=$(sha256sum scripts/crd-check/package-lock.json | cut -d' ' -f1)
    if [ "$(cat scripts/crd-check/node_modules/.lock.sha256 2>/dev/null)" != "$want" ]; then
        say "Installing KEDA's schema for the deployment checks (npm, once)"
        (cd scripts/crd-check && npm ci --silent --no-audit --no-fund)
        echo "$want" >scripts/crd-check/node_modules/.lock.sha256
    fi
}

ensure_packages
scripts/services.sh postgres redis
say "Kafka and OpenSearch jars (Maven Central, cached in .cache/)"
scripts/broker.sh fetch
scripts/search.sh build >/dev/null
ensure_python_tools
ensure_browser_tools
ensure_crd_check_tools

say "cargo test --workspace"
cargo test --workspace --locked "$@"
