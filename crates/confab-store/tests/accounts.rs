//! The account store contract, run against the embedded SQLite backend (the PostgreSQL and
//! MySQL backends will run the same checks).

use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_store::{Backend, StoreError, Stores};

fn creds(pw: &str) -> Vec<ScramCredentials> {
    [ScramHash::Sha1, ScramHash::Sha256]
        .into_iter()
        .map(|h| ScramCredentials::new_random(h, pw, 4096).expect("creds"))
        .collect()
}

#[tokio::test]
async fn account_lifecycle_and_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::Sqlite {
        path: dir.path().join("sub/dir/confab.db"),
    };
    {
        let s = Stores::open(&backend).await.expect("open creates the file");
        let a = &s.accounts;
        assert!(a
            .credentials("localhost", "alice")
            .await
            .expect("query")
            .is_none());
        a.create_account("localhost", "alice", &creds("pw1"))
            .await
            .expect("create");
        assert!(matches!(
            a.create_account("localhost", "alice", &creds("other"))
                .await,
            Err(StoreError::Conflict)
        ));
        // Same name on another domain is a different account.
        a.create_account("example.org", "alice", &creds("pw3"))
            .await
            .expect("create");
        a.create_account("localhost", "bob", &creds("pw2"))
            .await
            .expect("create");
        assert_eq!(
            a.list_accounts("localhost").await.expect("list"),
            vec!["alice", "bob"]
        );
        assert!(a
            .set_credentials("localhost", "alice", &creds("new"))
            .await
            .expect("set"));
        assert!(!a
            .set_credentials("localhost", "nobody", &creds("x"))
            .await
            .expect("set"));
    }
    // Reopen: migrations are idempotent and data survived.
    let s = Stores::open(&backend).await.expect("reopen");
    let a = &s.accounts;
    let stored = a
        .credentials("localhost", "alice")
        .await
        .expect("query")
        .expect("exists");
    assert_eq!(stored.len(), 2);
    for c in &stored {
        assert!(c.verify_password("new"));
        assert!(!c.verify_password("pw1"));
        // Only derived keys are stored, never the password.
        assert!(!c.stored_key.windows(3).any(|w| w == b"new"));
    }
    assert!(a
        .delete_account("localhost", "alice")
        .await
        .expect("delete"));
    assert!(!a
        .delete_account("localhost", "alice")
        .await
        .expect("delete twice"));
    assert!(a
        .credentials("localhost", "alice")
        .await
        .expect("query")
        .is_none());
    assert!(a
        .account_exists("example.org", "alice")
        .await
        .expect("exists"));
    // Credentials of a deleted account are gone too (cascade), so re-creating starts fresh.
    a.create_account("localhost", "alice", &creds("again"))
        .await
        .expect("recreate");
    let c = a
        .credentials("localhost", "alice")
        .await
        .expect("q")
        .expect("exists");
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|c| c.verify_password("again")));
}

#[tokio::test]
async fn a_name_registered_again_is_a_new_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::Sqlite {
        path: dir.path().join("confab.db"),
    };
    let first;
    {
        let s = Stores::open(&backend).await.expect("open");
        let a = &s.accounts;
        assert_eq!(
            a.account_generation("localhost", "alice").await.expect("q"),
            None
        );
        a.create_account("localhost", "alice", &creds("pw"))
            .await
            .expect("create");
        first = a
            .account_generation("localhost", "alice")
            .await
            .expect("q")
            .expect("exists");
        // Deleting the newest account must not let its number be handed out again.
        assert!(a
            .delete_account("localhost", "alice")
            .await
            .expect("delete"));
    }
    // Also across a restart.
    let s = Stores::open(&backend).await.expect("reopen");
    let a = &s.accounts;
    a.create_account("localhost", "alice", &creds("pw"))
        .await
        .expect("create again");
    let second = a
        .account_generation("localhost", "alice")
        .await
        .expect("q")
        .expect("exists");
    assert!(second > first, "{second} after {first}");
}

#[tokio::test]
async fn common_iterations_is_the_most_used_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Stores::open(&Backend::Sqlite {
        path: dir.path().join("confab.db"),
    })
    .await
    .expect("open");
    let a = &s.accounts;
    assert_eq!(a.common_iterations().await.expect("q"), None);
    let with = |n: u32| {
        [ScramHash::Sha1, ScramHash::Sha256]
            .into_iter()
            .map(|h| ScramCredentials::new_random(h, "pw", n).expect("creds"))
            .collect::<Vec<_>>()
    };
    a.create_account("localhost", "a", &with(4096))
        .await
        .expect("a");
    a.create_account("localhost", "b", &with(5000))
        .await
        .expect("b");
    a.create_account("localhost", "c", &with(5000))
        .await
        .expect("c");
    assert_eq!(a.common_iterations().await.expect("q"), Some(5000));
}
