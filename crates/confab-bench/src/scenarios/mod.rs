//! The scenarios, one file each. Each takes the checked [`crate::opts::Target`] and its own
//! options and returns a [`crate::Report`].

pub mod chat;
pub mod fanout;
pub mod idle;
pub mod login;
pub mod muc;
pub mod offline;
pub mod presence;
pub mod reconnect;
pub mod register;
