//! Built-in feature modules. Each file is one feature; `all()` lists them in load order.

use crate::module::Module;
use std::sync::Arc;

pub mod disco;
pub mod legacy_session;
pub mod ping;
pub mod presence;
pub mod register;
pub mod roster;
pub mod version;

/// Every built-in module; the configuration decides which are enabled.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(disco::Disco),
        Arc::new(ping::Ping),
        Arc::new(version::Version),
        Arc::new(legacy_session::LegacySession),
        Arc::new(roster::Roster),
        Arc::new(presence::Presence::default()),
        Arc::new(register::Register::default()),
    ]
}
