//! The tables, one migration list per backend. Names are never reused or edited once
//! released: a schema change is a new entry, in every list. The same data in each: what
//! differs is how the databases spell it.
//!
//! - SQLite keeps the migrations it shipped with before the other backends existed.
//! - PostgreSQL: text keys are `COLLATE "C"` (byte order and byte equality, as SQLite: a
//!   database created with a linguistic default collation would sort `list_accounts`
//!   differently). A B-tree entry holds at most about 2.7 kB, so a row whose key columns
//!   add up to more than that is refused with an error (a roster key of a 1023-byte
//!   username and a 1023-byte contact localpart still fits).
//! - MySQL/MariaDB: utf8mb4 everywhere (characters outside the BMP), a binary collation
//!   without space padding for every text column (`{bin}`, chosen per server in `mod.rs`), so
//!   `Alice` ≠ `alice` and `a` ≠ `a `. InnoDB keys are limited to 3072 bytes counted at
//!   4 bytes a character, too small for JID parts of 1023 bytes, so each table's uniqueness
//!   is a SHA-256 of its key columns (a stored generated column with a unique index, which
//!   `ON DUPLICATE KEY UPDATE` uses) and lookups use prefix indexes. Foreign keys need a
//!   full-length index on the parent, so MySQL tables have none: the SQL layer deletes an
//!   account's rows itself (in every backend; the cascades elsewhere are a second guard).
//!   MySQL's DDL is not transactional, hence `IF NOT EXISTS`.
//!
//! PostgreSQL and MySQL start with the accounts' `generation` in `accounts-1`: they never
//! had the earlier SQLite shape.

use super::dialect::Dialect;

pub(super) type Migration = (&'static str, &'static str);

pub(super) fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
        Dialect::Mysql => MYSQL,
    }
}

/// The table recording applied migrations.
pub(super) fn migrations_table(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite | Dialect::Postgres => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        }
        Dialect::Mysql => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR(191) NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin}"
        }
    }
}

/// The statements of one migration (none of them contains a `;` of its own).
pub(super) fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|s| !s.is_empty())
}

const SQLITE: &[Migration] = &[
    (
        "accounts-1",
        "CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (domain, username)
    );
    CREATE TABLE account_credentials (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        hash TEXT NOT NULL,
        iterations INTEGER NOT NULL,
        salt BLOB NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        PRIMARY KEY (domain, username, hash),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );",
    ),
    // AUTOINCREMENT never hands out a number twice, even after the highest row is gone;
    // the table keeps only its latest row.
    (
        "accounts-2-generation",
        "ALTER TABLE accounts ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE account_generations (id INTEGER PRIMARY KEY AUTOINCREMENT);",
    ),
    (
        "account-data-1",
        "CREATE TABLE account_data (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (domain, username, kind, key),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE TABLE host_data (
        domain TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (domain, kind, key)
    );",
    ),
    (
        "roster-1",
        "CREATE TABLE roster_items (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        jid TEXT NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL,
        ask INTEGER NOT NULL,
        pending_in TEXT,
        approved INTEGER NOT NULL,
        in_roster INTEGER NOT NULL,
        PRIMARY KEY (domain, username, jid),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE TABLE roster_groups (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        jid TEXT NOT NULL,
        grp TEXT NOT NULL,
        PRIMARY KEY (domain, username, jid, grp),
        FOREIGN KEY (domain, username, jid) REFERENCES roster_items (domain, username, jid) ON DELETE CASCADE
    );
    CREATE TABLE roster_versions (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (domain, username),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );",
    ),
    (
        "offline-1",
        "CREATE TABLE offline_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        stanza TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE INDEX offline_messages_by_account ON offline_messages (domain, username, id);",
    ),
    // The archive pages by (account, id): the id is the order, the public id (`sid`) is
    // looked up once per query to turn an RSM `after`/`before` into a row id.
    (
        "archive-1",
        "CREATE TABLE archive (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        sid TEXT NOT NULL,
        with_bare TEXT NOT NULL,
        with_full TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        stanza TEXT NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE INDEX archive_by_account ON archive (domain, username, id);
    CREATE INDEX archive_by_with ON archive (domain, username, with_bare, id);
    CREATE INDEX archive_by_sid ON archive (domain, username, sid);
    CREATE INDEX archive_by_stamp ON archive (stamp);",
    ),
    // Time filters find their first and last row on (account, stamp).
    (
        "archive-2",
        "CREATE INDEX archive_by_account_stamp ON archive (domain, username, stamp)",
    ),
    // A room's archive (XEP-0313 for MUC) pages by (room, id) like an account's; rooms
    // are not accounts, so no foreign key: the room's owner deletes it with the room.
    (
        "room-archive-1",
        "CREATE TABLE room_archive (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        room TEXT NOT NULL,
        sid TEXT NOT NULL,
        nick TEXT NOT NULL,
        jid TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        stanza TEXT NOT NULL
    );
    CREATE INDEX room_archive_by_room ON room_archive (service, room, id);
    CREATE INDEX room_archive_by_sid ON room_archive (service, room, sid);",
    ),
    // The retention sweep (`[muc] mam_retention_days`) finds the oldest rows by stamp
    // across every room, as `archive_by_stamp` serves the account archive's.
    (
        "room-archive-2",
        "CREATE INDEX room_archive_by_stamp ON room_archive (stamp)",
    ),
];

// An identity column's sequence never hands out a number twice, even after a restart.
const POSTGRES: &[Migration] = &[
    (
        "accounts-1",
        r#"CREATE TABLE accounts (
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        generation BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (domain, username)
    );
    CREATE TABLE account_generations (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
    CREATE TABLE account_credentials (
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        hash TEXT COLLATE "C" NOT NULL,
        iterations BIGINT NOT NULL,
        salt BYTEA NOT NULL,
        stored_key BYTEA NOT NULL,
        server_key BYTEA NOT NULL,
        PRIMARY KEY (domain, username, hash),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )"#,
    ),
    (
        "account-data-1",
        r#"CREATE TABLE account_data (
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        "key" TEXT COLLATE "C" NOT NULL,
        value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (domain, username, kind, "key"),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE TABLE host_data (
        domain TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        "key" TEXT COLLATE "C" NOT NULL,
        value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (domain, kind, "key")
    )"#,
    ),
    (
        "roster-1",
        r#"CREATE TABLE roster_items (
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        jid TEXT COLLATE "C" NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL,
        ask BIGINT NOT NULL,
        pending_in TEXT,
        approved BIGINT NOT NULL,
        in_roster BIGINT NOT NULL,
        PRIMARY KEY (domain, username, jid),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE TABLE roster_groups (
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        jid TEXT COLLATE "C" NOT NULL,
        grp TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (domain, username, jid, grp),
        FOREIGN KEY (domain, username, jid) REFERENCES roster_items (domain, username, jid) ON DELETE CASCADE
    );
    CREATE TABLE roster_versions (
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (domain, username),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )"#,
    ),
    (
        "offline-1",
        r#"CREATE TABLE offline_messages (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        stanza TEXT NOT NULL,
        stamp BIGINT NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE INDEX offline_messages_by_account ON offline_messages (domain, username, id)"#,
    ),
    (
        "archive-1",
        r#"CREATE TABLE archive (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        domain TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        sid TEXT COLLATE "C" NOT NULL,
        with_bare TEXT COLLATE "C" NOT NULL,
        with_full TEXT COLLATE "C" NOT NULL,
        stamp BIGINT NOT NULL,
        stanza TEXT NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE INDEX archive_by_account ON archive (domain, username, id);
    CREATE INDEX archive_by_with ON archive (domain, username, with_bare, id);
    CREATE INDEX archive_by_sid ON archive (domain, username, sid);
    CREATE INDEX archive_by_stamp ON archive (stamp)"#,
    ),
    (
        "archive-2",
        "CREATE INDEX archive_by_account_stamp ON archive (domain, username, stamp)",
    ),
    (
        "room-archive-1",
        r#"CREATE TABLE room_archive (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        service TEXT COLLATE "C" NOT NULL,
        room TEXT COLLATE "C" NOT NULL,
        sid TEXT COLLATE "C" NOT NULL,
        nick TEXT COLLATE "C" NOT NULL,
        jid TEXT COLLATE "C" NOT NULL,
        stamp BIGINT NOT NULL,
        stanza TEXT NOT NULL
    );
    CREATE INDEX room_archive_by_room ON room_archive (service, room, id);
    CREATE INDEX room_archive_by_sid ON room_archive (service, room, sid)"#,
    ),
    (
        "room-archive-2",
        "CREATE INDEX room_archive_by_stamp ON room_archive (stamp)",
    ),
];

// `{bin}` is the server's binary, non-padding utf8mb4 collation. AUTO_INCREMENT counters
// survive a restart (MySQL 8, MariaDB 10.2.4 and later), so a generation is never reused.
const MYSQL: &[Migration] = &[
    (
        "accounts-1",
        "CREATE TABLE IF NOT EXISTS accounts (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        created_at BIGINT NOT NULL,
        generation BIGINT NOT NULL DEFAULT 0,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username), 256))) STORED,
        UNIQUE KEY accounts_unique (unique_key),
        KEY accounts_by_name (domain(191), username(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC;
    CREATE TABLE IF NOT EXISTS account_generations (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY
    ) ENGINE=InnoDB;
    CREATE TABLE IF NOT EXISTS account_credentials (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        hash VARCHAR(32) NOT NULL,
        iterations BIGINT NOT NULL,
        salt BLOB NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username, hash), 256))) STORED,
        UNIQUE KEY account_credentials_unique (unique_key),
        KEY account_credentials_by_account (domain(191), username(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC",
    ),
    (
        "account-data-1",
        "CREATE TABLE IF NOT EXISTS account_data (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        kind VARCHAR(255) NOT NULL,
        \"key\" VARCHAR(3071) NOT NULL,
        value LONGTEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username, kind, \"key\"), 256))) STORED,
        UNIQUE KEY account_data_unique (unique_key),
        KEY account_data_by_account (domain(100), username(191), kind(100))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC;
    CREATE TABLE IF NOT EXISTS host_data (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        kind VARCHAR(255) NOT NULL,
        \"key\" VARCHAR(3071) NOT NULL,
        value LONGTEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, kind, \"key\"), 256))) STORED,
        UNIQUE KEY host_data_unique (unique_key),
        KEY host_data_by_kind (domain(191), kind(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC",
    ),
    (
        "roster-1",
        "CREATE TABLE IF NOT EXISTS roster_items (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        jid VARCHAR(3071) NOT NULL,
        name MEDIUMTEXT,
        subscription VARCHAR(8) NOT NULL,
        ask BIGINT NOT NULL,
        pending_in MEDIUMTEXT,
        approved BIGINT NOT NULL,
        in_roster BIGINT NOT NULL,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username, jid), 256))) STORED,
        UNIQUE KEY roster_items_unique (unique_key),
        KEY roster_items_by_account (domain(100), username(191), jid(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC;
    CREATE TABLE IF NOT EXISTS roster_groups (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        jid VARCHAR(3071) NOT NULL,
        grp VARCHAR(1023) NOT NULL,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username, jid, grp), 256))) STORED,
        UNIQUE KEY roster_groups_unique (unique_key),
        KEY roster_groups_by_account (domain(100), username(191), jid(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC;
    CREATE TABLE IF NOT EXISTS roster_versions (
        row_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        version BIGINT NOT NULL,
        unique_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username), 256))) STORED,
        UNIQUE KEY roster_versions_unique (unique_key),
        KEY roster_versions_by_account (domain(191), username(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC",
    ),
    (
        "offline-1",
        "CREATE TABLE IF NOT EXISTS offline_messages (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        stanza LONGTEXT NOT NULL,
        stamp BIGINT NOT NULL,
        KEY offline_messages_by_account (domain(100), username(191), id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC",
    ),
    // Prefix indexes cannot order by id after the account's columns, so the archive keys
    // its indexes on SHA-256 hashes of the account and of the bare `with` (generated
    // columns), which the queries compare with the same hash of their arguments.
    (
        "archive-1",
        "CREATE TABLE IF NOT EXISTS archive (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(1023) NOT NULL,
        username VARCHAR(1023) NOT NULL,
        sid VARCHAR(64) NOT NULL,
        with_bare VARCHAR(3071) NOT NULL,
        with_full VARCHAR(3071) NOT NULL,
        stamp BIGINT NOT NULL,
        stanza LONGTEXT NOT NULL,
        account_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', domain, username), 256))) STORED,
        with_key BINARY(32) AS (UNHEX(SHA2(with_bare, 256))) STORED,
        KEY archive_by_account (account_key, id),
        KEY archive_by_with (account_key, with_key, id),
        KEY archive_by_sid (account_key, sid),
        KEY archive_by_stamp (stamp),
        KEY archive_by_name (domain(100), username(191))
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC",
    ),
    (
        "archive-2",
        "ALTER TABLE archive ADD KEY archive_by_account_stamp (account_key, stamp)",
    ),
    // As `archive-1`: the indexes are on a SHA-256 of the room's columns.
    (
        "room-archive-1",
        "CREATE TABLE IF NOT EXISTS room_archive (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        service VARCHAR(1023) NOT NULL,
        room VARCHAR(1023) NOT NULL,
        sid VARCHAR(64) NOT NULL,
        nick VARCHAR(1023) NOT NULL,
        jid VARCHAR(3071) NOT NULL,
        stamp BIGINT NOT NULL,
        stanza LONGTEXT NOT NULL,
        room_key BINARY(32) AS (UNHEX(SHA2(CONCAT_WS(X'00', service, room), 256))) STORED,
        KEY room_archive_by_room (room_key, id),
        KEY room_archive_by_sid (room_key, sid)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={bin} ROW_FORMAT=DYNAMIC",
    ),
    (
        "room-archive-2",
        "ALTER TABLE room_archive ADD KEY room_archive_by_stamp (stamp)",
    ),
];
