//! In-band registration (XEP-0077) against an in-process confabd: a new account, taken
//! names, refused passwords, closed registration, password change and account removal.

use confab_client::{
    cancel_account, change_password, register_account, registration_fields, Client, Config, Error,
    RegistrationError,
};
use confab_modules::register::{RegistrationConfig, RegistrationPolicy};
use confab_tests::TestServer;

async fn server(change: impl FnOnce(&mut RegistrationConfig)) -> TestServer {
    TestServer::start_with(|c| {
        c.update_section("registration", |r: &mut RegistrationConfig| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 0;
            r.max_attempts_per_stream = 0;
            change(r);
        })
        .expect("registration section");
    })
    .await
}

fn config(ts: &TestServer, user: &str, password: &str) -> Config {
    let mut o = ts.options(user);
    o.password = password.to_string();
    Config::new(o)
}

#[tokio::test]
async fn register_log_in_change_password_and_cancel() {
    let ts = server(|_| {}).await;
    let cfg = config(&ts, "newbie", "first password");
    let fields = registration_fields(&cfg).await.expect("fields");
    assert!(
        fields.fields.contains(&"username".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.fields.contains(&"password".to_string()),
        "{fields:?}"
    );

    register_account(&cfg, &[]).await.expect("registers");
    let client = Client::connect(cfg.clone()).await.expect("logs in");
    assert_eq!(client.jid().to_bare().as_str(), "newbie@localhost");

    // The name is taken now.
    let again = register_account(&config(&ts, "newbie", "other password"), &[]).await;
    assert!(
        matches!(again, Err(RegistrationError::Conflict)),
        "{again:?}"
    );

    // A new password: the old one stops working, the new one logs in.
    change_password(&client, "second password")
        .await
        .expect("password changed");
    client.close().await.expect("close");
    let old = Client::connect(cfg.clone()).await;
    assert!(matches!(old, Err(Error::Connect(_))), "{old:?}");
    let cfg2 = config(&ts, "newbie", "second password");
    let client = Client::connect(cfg2.clone()).await.expect("new password");

    // Cancelled: nobody logs in as newbie any more.
    cancel_account(&client).await.expect("cancelled");
    let gone = Client::connect(cfg2).await;
    assert!(matches!(gone, Err(Error::Connect(_))), "{gone:?}");
}

#[tokio::test]
async fn refusals_are_typed() {
    let ts = server(|r| {
        r.min_password_length = 12;
        r.allow_password_change = false;
        r.allow_account_removal = false;
    })
    .await;
    let short = register_account(&config(&ts, "shorty", "short"), &[]).await;
    assert!(
        matches!(short, Err(RegistrationError::NotAcceptable(_))),
        "{short:?}"
    );
    let bad_name = register_account(&config(&ts, "no@name", "long enough password"), &[]).await;
    assert!(
        matches!(bad_name, Err(RegistrationError::NotAcceptable(_))),
        "{bad_name:?}"
    );
    let cfg = config(&ts, "keeper", "long enough password");
    register_account(&cfg, &[]).await.expect("registers");
    let client = Client::connect(cfg).await.expect("logs in");
    let change = change_password(&client, "another long password").await;
    assert!(
        matches!(change, Err(RegistrationError::NotAllowed(_))),
        "{change:?}"
    );
    let cancel = cancel_account(&client).await;
    assert!(
        matches!(cancel, Err(RegistrationError::NotAllowed(_))),
        "{cancel:?}"
    );
    // Still there and usable.
    assert!(!client.is_closed());
}

#[tokio::test]
async fn closed_registration_is_not_supported() {
    let ts = TestServer::start().await;
    let r = register_account(&config(&ts, "someone", "long enough password"), &[]).await;
    assert!(matches!(r, Err(RegistrationError::NotSupported)), "{r:?}");
}
