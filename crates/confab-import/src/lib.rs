//! Moving between servers and backends: `confabd export` and `confabd import` in the XEP-0227
//! format ("Portable Import/Export Format for XMPP-IM Servers", `urn:xmpp:pie:0`).
//!
//! `pie` writes and reads that format, streaming both ways: an export is written user by
//! user and archive page by archive page, an import reads the file as it goes and writes
//! archives in batches, so neither holds a whole document in memory.
//!
//! **Architecture invariant:** this crate reads and writes the stores only; it never runs
//! a server, so an import into a database a running server uses is the operator's choice.

pub mod openfire;
pub mod pie;
