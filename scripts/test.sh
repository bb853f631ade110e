#!/usr/bin/env bash
# Runs every test Confab has: formatting, lints, unit and integration tests, interop tests
# against independent XMPP implementations, and a bounded fuzz smoke run.
# Installs what the tests need (Prosody, a Python venv with slixmpp, go-sendxmpp, chromium, the pinned
# npm packages of tests/interop/web, cargo-fuzz) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The SDK's optional local storage (off by default, so not in the workspace build).
cargo clippy -p confab-client --all-targets --features storage -- -D warnings

echo "== cargo test"
# Prosody: the SDK's modules are checked against it (crates/confab-client/tests/prosody.rs).
./scripts/ensure-prosody.sh
cargo test --workspace
cargo test -p confab-client --features storage --test storage

echo "== interop: slixmpp, go-sendxmpp, xmpp.js and Converse.js against confabd"
./scripts/interop.sh

echo "== fuzz smoke (${CONFAB_FUZZ_SECONDS:-30}s per target, memory-limited)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# -malloc_limit_mb fails a run on any single huge allocation and -rss_limit_mb on growth;
# stream_memory also checks what the parser holds against its own budget. Seeds in
# fuzz/seeds/<target> start each run from known hard shapes.
for target in stream_parser sasl_server stream_memory payloads; do
    mkdir -p "fuzz/corpus/$target"
    seeds=()
    if [ -d "fuzz/seeds/$target" ]; then
        seeds=("seeds/$target")
    fi
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="${CONFAB_FUZZ_SECONDS:-30}" -rss_limit_mb=2048 -malloc_limit_mb=256)
done

echo "== all test stages passed"
