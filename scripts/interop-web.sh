#!/usr/bin/env bash
# Interop over XMPP over WebSocket (RFC 7395) and BOSH (XEP-0124/0206) with clients we did
# not write: xmpp.js from node (WebSocket), and Converse.js in headless Chromium driven by
# playwright-core, once over each transport (over WebSocket also group chat with the TCP
# peer); then the admin console in the same browser (its set-up wizard, which restarts
# confabd, so it runs last). Called by
# scripts/interop.sh, which starts confabd and makes the accounts.
#
#   interop-web.sh setup   installs what the tests need, on first use: Debian's chromium
#                          (as root) and the pinned npm packages of tests/interop/web
#                          (npm ci into a cache dir keyed by package-lock.json, linked as
#                          tests/interop/web/node_modules)
#   interop-web.sh run     runs the tests; needs in the environment: C2S_PORT, HTTP_PORT,
#                          HTTPS_PORT and CERT (confabd's TLS certificate, PEM),
#                          PYTHON (with slixmpp), ARTEFACTS (screenshots and logs go there),
#                          XJ_JID/XJ_PASSWORD, XJ_PEER_JID/XJ_PEER_PASSWORD (xmpp.js and its
#                          TCP peer), CV_JID/CV_PASSWORD, CV_PEER_JID/CV_PEER_PASSWORD (Converse
#                          over WebSocket), CB_JID/CB_PASSWORD, CB_PEER_JID/CB_PEER_PASSWORD
#                          (Converse over BOSH), CT_JID/CT_PASSWORD, CT_PEER_JID/CT_PEER_PASSWORD
#                          (Converse over wss:// on the HTTPS listener), ADMIN_PORT and SETUP_LINK (the admin
#                          console and the set-up link confabd logged; CONSOLE_LANG picks
#                          the wizard's language, zh-CN by default)
#
# Environment: CONFAB_WEB_CACHE (default ~/.cache/confab-web-interop), CHROMIUM (default
# /usr/bin/chromium), CONFAB_REQUIRE_SERVICES=1 (CI): a missing browser fails instead of
# skipping the Converse.js tests.
set -euo pipefail
cd "$(dirname "$0")/.."
WEB=tests/interop/web
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

setup() {
    if [ ! -x "$CHROMIUM" ]; then
        if [ "$(id -u)" = 0 ]; then
            echo "== installing chromium (Debian)"
            (apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium) >/dev/null
        else
            echo "== chromium is missing and only root can install it (apt-get install chromium)" >&2
        fi
    fi
    # A CJK font, so the admin console's screenshots in 简体中文 show characters, not boxes.
    if ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
        if [ "$(id -u)" = 0 ]; then
            echo "== installing fonts-wqy-zenhei (Debian)"
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq fonts-wqy-zenhei >/dev/null \
                || (apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq fonts-wqy-zenhei) >/dev/null
        else
            echo "== no CJK font (apt-get install fonts-wqy-zenhei): Chinese screenshots will show boxes" >&2
        fi
    fi
    command -v node >/dev/null && command -v npm >/dev/null \
        || { echo "node and npm are needed for the web interop tests" >&2; exit 1; }
    local cache key dir tmp
    cache="${CONFAB_WEB_CACHE:-$HOME/.cache/confab-web-interop}"
    key="$(cat "$WEB/package.json" "$WEB/package-lock.json" | sha256sum | cut -c1-16)"
    dir="$cache/$key"
    if [ ! -f "$dir/.installed" ]; then
        echo "== npm ci ($WEB/package-lock.json) into $dir"
        mkdir -p "$cache"
        tmp="$(mktemp -d "$cache/tmp.XXXXXX")"
        cp "$WEB/package.json" "$WEB/package-lock.json" "$tmp/"
        # --ignore-scripts: none of these packages needs an install step, and none may
        # download anything (playwright-core drives Debian's chromium, it fetches no browser).
        (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
        touch "$tmp/.installed"
        # Installed aside and moved into place, so an interrupted install is never used.
        mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
    fi
    if [ -e "$WEB/node_modules" ] && [ ! -L "$WEB/node_modules" ]; then
        echo "$WEB/node_modules is a directory, not the link to the cache: remove it" >&2
        exit 1
    fi
    ln -sfn "$dir/node_modules" "$WEB/node_modules"
}

# converse TRANSPORT JID PASSWORD PEER_JID PEER_PASSWORD VERSION: one Converse.js run.
converse() {
    local rc spki
    echo "== Converse.js $6 in headless Chromium over $1"
    # What Chromium's --ignore-certificate-errors-spki-list takes: base64 SHA-256 of the
    # certificate's public key.
    spki="$(openssl x509 -in "$CERT" -pubkey -noout | openssl pkey -pubin -outform der \
        | openssl dgst -sha256 -binary | base64)"
    set +e
    # The test bounds itself at 100 s (150 s over WebSocket, with group chat); timeout is
    # the backstop if node itself hangs.
    CERT_SPKI="$spki" WEB_TRANSPORT="$1" WEB_JID="$2" WEB_PASSWORD="$3" PEER_JID="$4" PEER_PASSWORD="$5" \
        CHROMIUM="$CHROMIUM" timeout 165 node "$WEB/converse.mjs"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || { echo "FAIL Converse.js interop over $1 (exit $rc), artefacts in $ARTEFACTS"; return 1; }
}

run() {
    local status=0 rc
    echo "== xmpp.js $(node -p 'require("./'"$WEB"'/node_modules/@xmpp/client/package.json").version') over WebSocket"
    set +e
    WEB_JID="$XJ_JID" WEB_PASSWORD="$XJ_PASSWORD" PEER_JID="$XJ_PEER_JID" PEER_PASSWORD="$XJ_PEER_PASSWORD" \
        timeout 90 node "$WEB/xmppjs.mjs"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || { echo "FAIL xmpp.js interop (exit $rc)"; status=1; }

    if [ ! -x "$CHROMIUM" ]; then
        if [ "${CONFAB_REQUIRE_SERVICES:-0}" = "1" ]; then
            echo "FAIL Converse.js interop: no browser at $CHROMIUM (CONFAB_REQUIRE_SERVICES=1)"
            return 1
        fi
        echo "SKIP Converse.js interop: no browser at $CHROMIUM (run as root once to install it)"
        return "$status"
    fi
    local version
    version="$(node -p 'require("./'"$WEB"'/node_modules/converse.js/package.json").version')"
    converse websocket "$CV_JID" "$CV_PASSWORD" "$CV_PEER_JID" "$CV_PEER_PASSWORD" "$version" || status=1
    converse bosh "$CB_JID" "$CB_PASSWORD" "$CB_PEER_JID" "$CB_PEER_PASSWORD" "$version" || status=1
    converse wss "$CT_JID" "$CT_PASSWORD" "$CT_PEER_JID" "$CT_PEER_PASSWORD" "$version" || status=1

    echo "== the admin console in headless Chromium (set-up wizard, users, sessions)"
    set +e
    ADMIN_PORT="$ADMIN_PORT" SETUP_LINK="$SETUP_LINK" CHROMIUM="$CHROMIUM" timeout 170 node "$WEB/console.mjs"
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || { echo "FAIL admin console (exit $rc), screenshots in $ARTEFACTS"; status=1; }
    return "$status"
}

case "${1:-}" in
    setup) setup ;;
    run) run ;;
    *) echo "usage: $0 setup|run" >&2; exit 2 ;;
esac
