//! Every difference between SQLite, PostgreSQL and MySQL/MariaDB that the stores' statements
//! meet, in one place. The stores write their statements once, in the SQL all three share
//! (`?` placeholders, standard double-quoted identifiers — MySQL connections run with
//! `ANSI_QUOTES`), and ask this module for the few pieces that differ. The tables themselves
//! (column types, keys, collations) are in `schema.rs`, one migration list per backend.

/// Which SQL a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// How a transaction holds the account row it works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Readers that must see one consistent state (the roster and its version).
    Shared,
    /// Writers of the account's data: they queue on the account row, so read-then-write
    /// logic (the offline quota, the roster version) needs no stronger isolation level.
    Exclusive,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL/MariaDB",
        }
    }

    /// The statement as this database wants it: PostgreSQL numbers its placeholders
    /// (`$1`, `$2`, …), the others take `?` as written.
    pub fn sql(self, statement: &str) -> String {
        if self != Dialect::Postgres {
            return statement.to_string();
        }
        let mut out = String::with_capacity(statement.len() + 16);
        let mut n = 0;
        let mut in_string = false;
        for c in statement.chars() {
            match c {
                '\'' => {
                    in_string = !in_string;
                    out.push(c);
                }
                '?' if !in_string => {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// `SELECT COUNT(*)` of the tables named `?` in the connection's database (0 or 1).
    pub fn table_exists(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
            }
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = ?"
            }
            Dialect::Mysql => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?"
            }
        }
    }

    /// The statement that opens a transaction that will write, if not the default `BEGIN`.
    /// SQLite: a deferred transaction that reads first fails with "database is locked" when
    /// another connection wrote in between (the busy timeout does not cover that upgrade),
    /// so writers take the write lock at once.
    pub fn begin_write(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => Some("BEGIN IMMEDIATE"),
            Dialect::Postgres | Dialect::Mysql => None,
        }
    }

    /// The clause after `SELECT … FROM accounts WHERE …` that locks the account row until the
    /// transaction ends. SQLite has no row locks and needs none: a writer holds the database's
    /// write lock (`BEGIN IMMEDIATE`) and a reader's transaction is a snapshot (WAL).
    pub fn lock_clause(self, lock: Lock) -> &'static str {
        match (self, lock) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, Lock::Shared) => " FOR SHARE",
            (Dialect::Mysql, Lock::Shared) => " LOCK IN SHARE MODE",
            (Dialect::Postgres | Dialect::Mysql, Lock::Exclusive) => " FOR UPDATE",
        }
    }

    /// `INSERT INTO table (columns) VALUES (?, …)` that replaces the other columns when a row
    /// with the same `key` exists.
    pub fn upsert(self, table: &str, columns: &[&str], key: &[&str]) -> String {
        let insert = insert(table, columns);
        let others: Vec<&&str> = columns.iter().filter(|c| !key.contains(c)).collect();
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                let set: Vec<String> = others
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                format!(
                    "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                    key.join(", "),
                    set.join(", ")
                )
            }
            // The conflict is on the table's unique key (a hash of these columns, see
            // schema.rs); MySQL does not name it in the statement.
            Dialect::Mysql => {
                let set: Vec<String> = others
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect();
                format!("{insert} ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
        }
    }

    /// `INSERT` that does nothing when a row with the same `key` exists. Not MySQL's
    /// `INSERT IGNORE`: that also turns errors such as a value too long into warnings and
    /// stores a truncated value.
    pub fn insert_or_ignore(self, table: &str, columns: &[&str], key: &[&str]) -> String {
        let insert = insert(table, columns);
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                format!("{insert} ON CONFLICT ({}) DO NOTHING", key.join(", "))
            }
            Dialect::Mysql => format!("{insert} ON DUPLICATE KEY UPDATE {0} = {0}", key[0]),
        }
    }

    /// A counter row keyed by `key` (bound in that order): inserted at 1, or incremented.
    /// Read it back in the same transaction (MySQL has no `RETURNING`).
    pub fn increment(self, table: &str, key: &[&str], counter: &str) -> String {
        let mut columns = key.to_vec();
        columns.push(counter);
        let marks = vec!["?"; key.len()].join(", ");
        let head = format!(
            "INSERT INTO {table} ({}) VALUES ({marks}, 1)",
            columns.join(", ")
        );
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!(
                "{head} ON CONFLICT ({}) DO UPDATE SET {counter} = {table}.{counter} + 1",
                key.join(", ")
            ),
            Dialect::Mysql => format!("{head} ON DUPLICATE KEY UPDATE {counter} = {counter} + 1"),
        }
    }

    /// A row of defaults only (the table's identity column numbers it).
    pub fn insert_defaults(self, table: &str) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!("INSERT INTO {table} DEFAULT VALUES"),
            Dialect::Mysql => format!("INSERT INTO {table} () VALUES ()"),
        }
    }

    /// How the number an identity column gave an inserted row comes back: with
    /// `RETURNING id` (the `Any` driver reports no last insert id for PostgreSQL and
    /// SQLite), or with the result for MySQL, which has no `RETURNING`.
    pub fn returning_id(self) -> bool {
        self != Dialect::Mysql
    }
}

fn insert(table: &str, columns: &[&str]) -> String {
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        vec!["?"; columns.len()].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_placeholders_outside_strings() {
        assert_eq!(
            Dialect::Postgres.sql("SELECT '?' FROM t WHERE a = ? AND b = ?"),
            "SELECT '?' FROM t WHERE a = $1 AND b = $2"
        );
        assert_eq!(Dialect::Mysql.sql("a = ?"), "a = ?");
    }

    #[test]
    fn upserts_per_dialect() {
        let cols = ["domain", "kind", "\"key\"", "value"];
        let key = ["domain", "kind", "\"key\""];
        assert_eq!(
            Dialect::Postgres.upsert("host_data", &cols, &key),
            "INSERT INTO host_data (domain, kind, \"key\", value) VALUES (?, ?, ?, ?) \
             ON CONFLICT (domain, kind, \"key\") DO UPDATE SET value = excluded.value"
        );
        assert_eq!(
            Dialect::Mysql.upsert("host_data", &cols, &key),
            "INSERT INTO host_data (domain, kind, \"key\", value) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE value = VALUES(value)"
        );
        assert_eq!(
            Dialect::Sqlite.increment("v", &["d", "u"], "version"),
            "INSERT INTO v (d, u, version) VALUES (?, ?, 1) \
             ON CONFLICT (d, u) DO UPDATE SET version = v.version + 1"
        );
    }
}
