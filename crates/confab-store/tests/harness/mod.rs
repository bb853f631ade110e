//! Test databases for the conformance suite: a temporary SQLite file, or a database of its
//! own on the PostgreSQL (127.0.0.1:5432) or MariaDB/MySQL (127.0.0.1:3306) server, created
//! for one test and dropped after it, so tests run in parallel.
//!
//! A server that cannot be reached skips the test with a line on stderr, unless
//! `CONFAB_REQUIRE_SERVICES=1` (CI), where it fails the test. `CONFAB_TEST_POSTGRES_URL` and
//! `CONFAB_TEST_MYSQL_URL` name other servers (a URL to an existing database the test user
//! may create databases from).

use confab_store::{Backend, Stores};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use std::sync::atomic::{AtomicU32, Ordering};

const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

fn admin_url(kind: Kind) -> String {
    let (var, default) = match kind {
        Kind::Mysql => ("CONFAB_TEST_MYSQL_URL", MYSQL_ADMIN),
        _ => ("CONFAB_TEST_POSTGRES_URL", POSTGRES_ADMIN),
    };
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// `host:port` of a URL, for messages (no user or password).
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// The URL of another database on the same server.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{name}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// One test's database; dropped (server databases: `DROP DATABASE`) with this value.
pub struct TestDb {
    pub kind: Kind,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    server_db: Option<String>,
    admin: String,
}

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "confab_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

fn services_required() -> bool {
    std::env::var("CONFAB_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

impl TestDb {
    /// A fresh, empty database of this kind, or `None` (test skipped) when its server is
    /// not reachable and services are not required.
    pub async fn new(kind: Kind) -> Option<TestDb> {
        sqlx::any::install_default_drivers();
        let (what, at) = match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                return Some(TestDb {
                    kind,
                    backend: Backend::Sqlite {
                        path: dir.path().join("confab.db"),
                    },
                    _dir: Some(dir),
                    server_db: None,
                    admin: String::new(),
                });
            }
            Kind::Postgres => ("PostgreSQL", admin_url(kind)),
            Kind::Mysql => ("MariaDB/MySQL", admin_url(kind)),
        };
        let admin = at.clone();
        let at = host_port(&at);
        let mut conn = match AnyConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if services_required() {
                    panic!("{what} not reachable at {at} and CONFAB_REQUIRE_SERVICES=1: {e}");
                }
                eprintln!("skipped: {what} not reachable at {at} ({e})");
                return None;
            }
        };
        let name = unique_name();
        let create = match kind {
            Kind::Mysql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
            _ => format!("CREATE DATABASE {name}"),
        };
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        Some(TestDb {
            kind,
            backend: match kind {
                Kind::Postgres => Backend::Postgres { url },
                _ => Backend::Mysql { url },
            },
            _dir: None,
            server_db: Some(name),
            admin,
        })
    }

    pub async fn open(&self) -> Stores {
        Stores::open(&self.backend).await.expect("open stores")
    }

    /// A connection of its own to the test database, for statements the stores never run
    /// (corrupting rows, dropping tables).
    pub async fn raw(&self) -> AnyConnection {
        let url = match &self.backend {
            Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
            Backend::Postgres { url } | Backend::Mysql { url } => url.clone(),
        };
        let mut conn = AnyConnection::connect(&url).await.expect("raw connection");
        if self.kind == Kind::Mysql {
            sqlx::raw_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
                .execute(&mut conn)
                .await
                .expect("ansi quotes");
        }
        conn
    }

    pub async fn exec(&self, sql: &str) {
        let mut conn = self.raw().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.server_db.take() else {
            return;
        };
        let admin = self.admin.clone();
        let drop = match self.kind {
            Kind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread of its
        // own with a small runtime does the dropping.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = AnyConnection::connect(&admin).await {
                    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await {
                        eprintln!("could not drop test database: {e}");
                    }
                    let _ = conn.close().await;
                }
            })
        })
        .join();
        if done.is_err() {
            eprintln!("could not drop test database {}", self.kind_name());
        }
    }
}

impl TestDb {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
            Kind::Mysql => "MySQL",
        }
    }
}

/// Generates, for every named case (an `async fn(TestDb)` in the including file), one test
/// per backend: `sqlite::case`, `postgres::case`, `mysql::case`.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(db) = $crate::harness::TestDb::new($crate::harness::Kind::Sqlite).await {
                        super::$case(db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(db) = $crate::harness::TestDb::new($crate::harness::Kind::Postgres).await {
                        super::$case(db).await;
                    }
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(db) = $crate::harness::TestDb::new($crate::harness::Kind::Mysql).await {
                        super::$case(db).await;
                    }
                }
            )*
        }
    };
}
