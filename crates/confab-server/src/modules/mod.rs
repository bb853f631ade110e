//! Built-in feature modules. Each file is one feature; `all()` lists them in load order.

use crate::module::Module;
use std::sync::Arc;

pub mod blocking;
pub mod disco;
pub mod last;
pub mod legacy_session;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod private;
pub mod register;
pub mod roster;
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
        Arc::new(roster::Roster),
        Arc::new(presence::Presence::default()),
        Arc::new(register::Register::default()),
        Arc::new(vcard::Vcard),
        Arc::new(private::Private),
        Arc::new(time::Time),
        Arc::new(last::Last::default()),
        Arc::new(blocking::Blocking::new()),
        Arc::new(offline::Offline::new()),
    ]
}
