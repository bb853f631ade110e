#!/usr/bin/env bash
# Moving in from Openfire (the primer's server): an Openfire database on the local MariaDB
# (127.0.0.1:3306, root), created from Openfire's published MySQL schema (the tables
# `confabd import --from openfire` reads) with rows as Openfire 4.x writes them: alice with
# SCRAM-SHA-1 keys, bob with a Blowfish-encrypted password (the database's passwordKey),
# carol with a plain one; rosters with groups and a pending request, a vCard, an offline
# message, a members-only room with a password, and alice as Openfire's administrator.
# `confabd import --from openfire mysql://…` reads it; the users then log in to confabd
# with their old passwords over XMPP (slixmpp) and see their data
# (tests/interop/import_old_server.py), and alice logs in to the admin console.
#
# No Openfire server runs here (it is not packaged for Debian); the rows follow its schema
# and its own password encodings (see crates/confab-import/src/openfire/).
#
# Usage: import_openfire.sh CONFABD PYTHON   (PYTHON: the venv's, with slixmpp)
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFABD=$1
PYTHON=$2
MYSQL_URL=${CONFAB_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MYSQL_BASE=${MYSQL_URL%/*}

if ! command -v mariadb > /dev/null; then
    echo "== the mariadb client is missing (apt-get install mariadb-client)" >&2
    exit 1
fi
if ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' > /dev/null 2>&1; then
    if [ "${CONFAB_REQUIRE_SERVICES:-}" = 1 ]; then
        echo "== MariaDB is not reachable at 127.0.0.1:3306 and CONFAB_REQUIRE_SERVICES=1" >&2
        exit 1
    fi
    echo "== skipped: MariaDB is not reachable at 127.0.0.1:3306"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-import-openfire.XXXXXX")
DB="confab_openfire_if_$$"
PIDS=()
STATUS=1
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2> /dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    mariadb -h 127.0.0.1 -P 3306 -u root -e "DROP DATABASE IF EXISTS $DB" 2> /dev/null || true
    if [ "$STATUS" -ne 0 ]; then
        for f in "$WORK"/confabd.log "$WORK"/import.txt; do
            [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }
        done
        echo "== (kept $WORK)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_ports, wait_port
. tests/interop/import_lib.sh

read -r CPORT CTLS HTTP ADMIN < <(free_ports 4)
export ALICE_PASSWORD="alice-$RANDOM$RANDOM" CAROL_PASSWORD="carol-$RANDOM$RANDOM"
# bob's password is encrypted the way Openfire encrypts it (Blowfish under the database's
# passwordKey); the value below was made with Openfire's own Blowfish class.
export BOB_PASSWORD="old password"
PASSWORD_KEY="kQ8vWz3YpR1tXn5"
BOB_ENCRYPTED="c47f188c3f7d0179e0849b1bf0bfe5e7a83f21e6aa16e11ff588e654e563bddb69ae61ec2e2a4703"

# --- the Openfire database ---------------------------------------------------------------
# Openfire keeps SCRAM-SHA-1 keys (base64) with their salt and iteration count in ofUser.
read -r STORED SERVER SALT < <(python3 - << 'PY'
import base64, hashlib, hmac, os
salt = os.urandom(16)
salted = hashlib.pbkdf2_hmac("sha1", os.environ["ALICE_PASSWORD"].encode(), salt, 4096)
client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
server_key = hmac.new(salted, b"Server Key", hashlib.sha1).digest()
b = lambda v: base64.b64encode(v).decode()
print(b(hashlib.sha1(client_key).digest()), b(server_key), b(salt))
PY
)
NOW=$(printf '%015d' "$(($(date +%s) * 1000))")
mariadb -h 127.0.0.1 -P 3306 -u root -e "CREATE DATABASE $DB CHARACTER SET utf8mb4"
mariadb -h 127.0.0.1 -P 3306 -u root "$DB" < crates/confab-import/tests/openfire/openfire_mysql_tables.sql
mariadb -h 127.0.0.1 -P 3306 -u root "$DB" << SQL
INSERT INTO ofProperty (name, propValue) VALUES ('xmpp.domain', 'localhost'),
  ('passwordKey', '$PASSWORD_KEY'), ('admin.authorizedJIDs', 'alice@localhost');
INSERT INTO ofUser (username, storedKey, serverKey, salt, iterations, plainPassword, encryptedPassword, name, email, creationDate, modificationDate) VALUES
  ('alice', '$STORED', '$SERVER', '$SALT', 4096, NULL, NULL, 'Alice', NULL, '$NOW', '$NOW'),
  ('bob', NULL, NULL, NULL, NULL, NULL, '$BOB_ENCRYPTED', 'Bob', NULL, '$NOW', '$NOW'),
  ('carol', NULL, NULL, NULL, NULL, '$CAROL_PASSWORD', NULL, NULL, NULL, '$NOW', '$NOW');
INSERT INTO ofRoster (rosterID, username, jid, sub, ask, recv, nick, stanza) VALUES
  (1, 'alice', 'bob@localhost', 3, -1, -1, 'Bobby', NULL),
  (2, 'bob', 'alice@localhost', 3, -1, -1, NULL, NULL),
  (3, 'alice', 'carol@localhost', 0, -1, 1, NULL, '<presence xmlns="jabber:client" type="subscribe" from="carol@localhost" to="alice@localhost"/>'),
  (4, 'carol', 'alice@localhost', 0, 0, -1, NULL, NULL);
INSERT INTO ofRosterGroups (rosterID, \`rank\`, groupName) VALUES (1, 0, 'Friends'), (1, 1, 'Team');
INSERT INTO ofVCard (username, vcard) VALUES ('alice', '<vCard xmlns="vcard-temp"><FN>Alice Liddell</FN><NICKNAME>alice</NICKNAME></vCard>');
INSERT INTO ofOffline (username, messageID, creationDate, messageSize, stanza) VALUES
  ('bob', 1, '$NOW', 120, '<message from="alice@localhost/desk" to="bob@localhost" type="chat" id="of1"><body>kept by Openfire</body></message>');
INSERT INTO ofMucService (serviceID, subdomain, isHidden) VALUES (1, 'conference', 0);
INSERT INTO ofMucRoom (serviceID, roomID, creationDate, modificationDate, name, naturalName, description, lockedDate, emptyDate, canChangeSubject, maxUsers, publicRoom, moderated, membersOnly, canInvite, roomPassword, canDiscoverJID, logEnabled, subject, rolesToBroadcast, useReservedNick, canChangeNick, canRegister, allowpm, fmucEnabled) VALUES
  (1, 10, '$NOW', '$NOW', 'team', 'The Team', 'Where we plan', '000000000000000', NULL, 0, 30, 1, 0, 1, 1, 's3cret', 1, 1, 'Release on Friday', 7, 0, 1, 1, 0, 0);
INSERT INTO ofMucAffiliation (roomID, jid, affiliation) VALUES (10, 'alice@localhost', 10);
SQL

# --- confabd: import, then the users log in ----------------------------------------------
cat > "$WORK/confabd.toml" << TOML
[server]
domains = ["localhost"]
data_dir = "$WORK/confab"
[c2s]
interfaces = ["127.0.0.1"]
port = $CPORT
tls_port = $CTLS
[http]
interfaces = ["127.0.0.1"]
port = $HTTP
tls_port = 0
[admin]
listen = "127.0.0.1:$ADMIN"
TOML
echo "== confabd import --from openfire ${MYSQL_BASE}/$DB"
if ! "$CONFABD" --config "$WORK/confabd.toml" import --from openfire "$MYSQL_BASE/$DB" > "$WORK/import.txt" 2>&1; then
    cat "$WORK/import.txt"
    exit 1
fi
cat "$WORK/import.txt"
for u in alice bob carol; do
    grep -q "^imported $u@localhost$" "$WORK/import.txt"
done
grep -q "^admin alice@localhost " "$WORK/import.txt"
RUST_LOG=info "$CONFABD" --config "$WORK/confabd.toml" run >> "$WORK/confabd.log" 2>&1 &
PIDS+=($!)
wait_port "$CPORT" "${PIDS[-1]}"
wait_port "$ADMIN" "${PIDS[-1]}"
if grep -q "setup?token=" "$WORK/confabd.log"; then
    echo "FAIL the set-up wizard was offered although Openfire's admin moved in" >&2
    exit 1
fi
"$PYTHON" tests/interop/import_old_server.py --phase verify --host 127.0.0.1 \
    --port "$CPORT" --tls-port "$CTLS" --alice alice@localhost --bob bob@localhost \
    --carol carol@localhost --no-private --offline-body "kept by Openfire" \
    --room team@conference.localhost --room-password s3cret \
    --room-subject "Release on Friday" --timeout 60
# Openfire's administrator logs in to the console with her old password; bob may not.
python3 tests/interop/console_login.py "http://127.0.0.1:$ADMIN" alice@localhost "$ALICE_PASSWORD" ok
python3 tests/interop/console_login.py "http://127.0.0.1:$ADMIN" bob@localhost "$BOB_PASSWORD" refused
STATUS=0
