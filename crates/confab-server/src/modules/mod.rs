//! Built-in feature modules. Each file is one feature; `all()` lists them in load order.

use crate::module::Module;
use std::sync::Arc;

pub mod blocking;
pub mod disco;
pub mod legacy_session;
pub mod offline;
pub mod ping;
pub mod version;

/// Every built-in module; the configuration decides which are enabled.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(disco::Disco),
        Arc::new(ping::Ping),
        Arc::new(version::Version),
        Arc::new(legacy_session::LegacySession),
        Arc::new(blocking::Blocking::new()),
        Arc::new(offline::Offline::new()),
    ]
}
