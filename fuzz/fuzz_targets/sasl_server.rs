//! Drives the server side of SCRAM (all mechanisms) and PLAIN with arbitrary client
//! messages: errors are fine, panics are not.
#![no_main]

use confab_proto::sasl::{parse_plain, ChannelBindingData, Mechanism, ScramCredentials, ScramHash, ScramServer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_plain(data);
    let (sel, rest) = match data.split_first() {
        Some((s, r)) => (*s, r),
        None => return,
    };
    let mech = Mechanism::ALL[usize::from(sel) % Mechanism::ALL.len()];
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (first, last) = rest.split_at(split);
    let cb = ChannelBindingData {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: Some(vec![9; 32]),
    };
    let mut s = ScramServer::new(mech, cb, sel & 0x80 != 0);
    if s.handle_client_first(first).is_err() {
        return;
    }
    let hash = mech.hash().unwrap_or(ScramHash::Sha256);
    // A fixed low-cost credential keeps each run fast; 4096 is the protocol minimum.
    let creds = match ScramCredentials::derive(hash, "pencil", b"salt-salt-salt", 4096) {
        Ok(c) => c,
        Err(_) => return,
    };
    let _ = if sel & 0x40 != 0 {
        s.server_first_unknown_user(4096, b"secret")
    } else {
        s.server_first(&creds)
    };
    let _ = s.handle_client_final(last.get(1..).unwrap_or_default());
});
