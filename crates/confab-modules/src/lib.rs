//! Built-in feature modules. Each file is one feature; `all()` lists them in load order.

use confab_server::module::Module;
use std::sync::Arc;

pub mod blocking;
pub mod carbons;
pub mod client_state;
pub mod disco;
pub mod last;
pub mod legacy_session;
pub mod mam;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod private;
pub mod register;
pub mod roster;
pub mod stream_management;
pub mod time;
pub mod vcard;
pub mod version;

/// Every built-in module; the configuration decides which are enabled.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(disco::Disco::default()),
        Arc::new(ping::Ping::default()),
        Arc::new(version::Version),
        Arc::new(legacy_session::LegacySession),
        Arc::new(roster::Roster::default()),
        Arc::new(presence::Presence::default()),
        Arc::new(register::Register::default()),
        Arc::new(vcard::Vcard::default()),
        Arc::new(private::Private),
        Arc::new(time::Time),
        Arc::new(last::Last::default()),
        Arc::new(blocking::Blocking::new()),
        Arc::new(carbons::Carbons),
        Arc::new(mam::Mam::default()),
        Arc::new(offline::Offline::new()),
        Arc::new(stream_management::StreamManagement::default()),
        Arc::new(client_state::ClientState::default()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_server::config::Config;
    use confab_server::module::Registry;

    fn config_from(text: &str, env: Vec<(&str, &str)>) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).expect("write");
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_with_env(Some(&p), env).expect("core sections are valid")
    }

    #[test]
    fn module_sections_take_defaults_files_and_environment() {
        let c = Config::default();
        let r: register::RegistrationConfig = c.section("registration").expect("defaults");
        assert_eq!(r.policy, register::RegistrationPolicy::Closed);
        assert_eq!(r.min_password_length, 8);
        let c = config_from(
            "[registration]\npolicy = 'open'\n[offline]\nquota = 7\n",
            vec![
                ("CONFABD_REGISTRATION__POLICY", "invite"),
                ("CONFABD_REGISTRATION__RATE_LIMIT_PER_IP", "0"),
            ],
        );
        let r: register::RegistrationConfig = c.section("registration").expect("valid");
        assert_eq!(r.policy, register::RegistrationPolicy::Invite);
        assert_eq!(r.rate_limit_per_ip, 0);
        let o: offline::OfflineConfig = c.section("offline").expect("valid");
        assert_eq!(o.quota, 7);
        Registry::build_with_config(all(), &[], &c).expect("every section is claimed");
    }

    #[test]
    fn bad_module_sections_stop_the_start_naming_the_section() {
        let cases = [
            ("[registration]\npolicy = 'maybe'\n", "[registration]"),
            (
                "[registration]\nmin_password_length = 0\n",
                "[registration]",
            ),
            ("[registration]\nrate_window = 0\n", "[registration]"),
            ("[vcard]\nmax_size = 10\n", "[vcard]"),
            ("[vcard]\nmax_size = 100000000\n", "[vcard]"),
            ("[offline]\nquota = 1000000\n", "[offline]"),
            ("[offline]\nquota = -1\n", "[offline]"),
            ("[blocking]\nmax_items = 1000000\n", "[blocking]"),
            ("[blocking]\nnosuchkey = 1\n", "[blocking]"),
            ("[roster]\nmax_items = 'many'\n", "[roster]"),
            ("[nosuchmodule]\nx = 1\n", "[nosuchmodule]"),
        ];
        for (text, name) in cases {
            let c = config_from(text, vec![]);
            match Registry::build_with_config(all(), &[], &c) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => assert!(e.contains(name), "{text}: {e}"),
            }
        }
        // A section read by two modules is reported once.
        let c = config_from("[roster]\nmax_items = 'many'\n", vec![]);
        let e = Registry::build_with_config(all(), &[], &c)
            .err()
            .expect("refused");
        assert_eq!(e.matches("[roster]").count(), 1, "{e}");
    }
}
