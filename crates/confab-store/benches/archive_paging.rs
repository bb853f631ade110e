//! Paging through a large message archive (XEP-0313): one account with
//! `CONFAB_BENCH_ARCHIVE_ROWS` messages (default 1,000,000) with 50 contacts, then pages of
//! 50 — the first, the last, one from the middle, one with a `with` filter, one from a time
//! in the middle, and the count of everything.
//!
//! SQLite (a file in a temporary directory) always; PostgreSQL when
//! `CONFAB_BENCH_POSTGRES_URL` names a database the bench may fill (its archive is reused
//! across runs when it already holds the rows); MySQL/MariaDB likewise with
//! `CONFAB_BENCH_MYSQL_URL`. Run with `cargo bench -p confab-store --bench archive_paging`.

use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_store::{ArchiveQuery, ArchivedMessage, Backend, StoreError, Stores};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tokio::runtime::Runtime;

const DOMAIN: &str = "bench.example";
const USER: &str = "alice";
const CONTACTS: usize = 50;
const PAGE: usize = 50;
/// Stamps one millisecond apart from here (Unix microseconds).
const T0: i64 = 1_700_000_000_000_000;

fn rows() -> usize {
    std::env::var("CONFAB_BENCH_ARCHIVE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn message(i: usize) -> ArchivedMessage {
    ArchivedMessage {
        id: format!("id{i:08}"),
        with: format!("contact{}@example.org/phone", i % CONTACTS),
        stamp: T0 + i as i64 * 1000,
        stanza: format!(
            "<message xmlns='jabber:client' type='chat' id='m{i}'><body>message number {i}, with a few words in it</body></message>"
        ),
    }
}

/// Opens the store and fills the archive unless it already holds `n` messages.
async fn prepare(backend: &Backend, n: usize) -> Result<Stores, StoreError> {
    let stores = Stores::open(backend).await?;
    let creds = vec![ScramCredentials::new_random(ScramHash::Sha256, "pw", 4096)
        .map_err(|e| StoreError::Database(e.to_string()))?];
    match stores.accounts.create_account(DOMAIN, USER, &creds).await {
        Ok(_) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(e),
    }
    let all = ArchiveQuery {
        max: 0,
        count: true,
        ..Default::default()
    };
    let have = stores
        .archive
        .query_archive(DOMAIN, USER, &all)
        .await?
        .and_then(|p| p.count)
        .unwrap_or(0);
    if have as usize != n {
        stores.archive.delete_archive(DOMAIN, USER).await?;
        let started = std::time::Instant::now();
        for start in (0..n).step_by(10_000) {
            let batch: Vec<ArchivedMessage> =
                (start..(start + 10_000).min(n)).map(message).collect();
            stores
                .archive
                .append_archive_batch(DOMAIN, USER, &batch)
                .await?;
        }
        eprintln!("filled {n} messages in {:?}", started.elapsed());
    }
    // What an import does at its end (see `refresh_archive_statistics`).
    stores.archive.refresh_archive_statistics().await?;
    Ok(stores)
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, name: &str, backend: &Backend) {
    let n = rows();
    let stores = match rt.block_on(prepare(backend, n)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: skipped ({e})");
            return;
        }
    };
    let middle = message(n / 2).id;
    let mut g = c.benchmark_group(format!("archive_paging/{name}/{n}"));
    g.sample_size(20);
    let cases: Vec<(&str, ArchiveQuery)> = vec![
        ("first_page", ArchiveQuery::default()),
        (
            "last_page",
            ArchiveQuery {
                before: Some(String::new()),
                ..Default::default()
            },
        ),
        (
            "page_after_middle",
            ArchiveQuery {
                after: Some(middle.clone()),
                ..Default::default()
            },
        ),
        (
            "page_before_middle",
            ArchiveQuery {
                before: Some(middle.clone()),
                ..Default::default()
            },
        ),
        (
            "with_contact_last_page",
            ArchiveQuery {
                with: Some("contact7@example.org".into()),
                before: Some(String::new()),
                ..Default::default()
            },
        ),
        (
            "start_in_the_middle",
            ArchiveQuery {
                start: Some(T0 + (n as i64 / 2) * 1000),
                ..Default::default()
            },
        ),
        (
            "count_everything",
            ArchiveQuery {
                count: true,
                ..Default::default()
            },
        ),
    ];
    for (case, mut q) in cases {
        q.max = PAGE;
        g.bench_function(case, |b| {
            b.iter(|| {
                let page = rt
                    .block_on(stores.archive.query_archive(DOMAIN, USER, &q))
                    .expect("query")
                    .expect("known ids");
                assert_eq!(page.items.len(), PAGE);
                black_box(page)
            })
        });
    }
    g.finish();
}

fn archive_paging(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Backend::Sqlite {
        path: dir.path().join("bench.db"),
    };
    bench_backend(c, &rt, "sqlite", &sqlite);
    for (var, name) in [
        ("CONFAB_BENCH_POSTGRES_URL", "postgres"),
        ("CONFAB_BENCH_MYSQL_URL", "mysql"),
    ] {
        match std::env::var(var).ok().map(|u| Backend::from_url(&u)) {
            Some(Ok(b)) => bench_backend(c, &rt, name, &b),
            Some(Err(e)) => eprintln!("{name}: {var} is not a storage URL: {e}"),
            None => eprintln!("{name}: skipped (set {var} to a database the bench may fill)"),
        }
    }
}

criterion_group!(benches, archive_paging);
criterion_main!(benches);
