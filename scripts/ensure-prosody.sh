#!/usr/bin/env bash
# Installs Debian's Prosody if it is missing: the SDK's interop test
# (crates/confab-client/tests/prosody.rs) starts its own Prosody on loopback with its own
# configuration and data directory, never the system service.
set -euo pipefail
if command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1; then
    exit 0
fi
echo "== installing prosody (Debian) for the SDK's interop test"
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq prosody >/dev/null
# The package starts the system service where an init system runs; the test needs none.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prosody 2>/dev/null; then
    systemctl stop prosody || true
fi
