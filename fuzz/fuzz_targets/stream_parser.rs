//! Feeds arbitrary bytes, in arbitrary chunks, to the stream parser with tight limits, and
//! serializes every element it yields (which must parse back).
#![no_main]

use confab_proto::parser::{Limits, StreamEvent, StreamParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_stanza_size: 8192,
        max_depth: 16,
        max_attributes: 8,
        max_name_length: 64,
        max_stanza_memory: 64 * 1024,
    };
    let mut p = StreamParser::new(limits.clone());
    // The first byte picks a chunk size so split tokens get exercised.
    let (chunk, rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c).max(1), r),
        None => return,
    };
    for piece in rest.chunks(chunk) {
        let mut buf = piece;
        loop {
            match p.next_event(&mut buf) {
                Ok(Some(StreamEvent::Element(e))) => {
                    let xml = e.to_xml("jabber:client");
                    let doc = format!(
                        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{xml}"
                    );
                    let mut q = StreamParser::new(Limits { max_stanza_size: 1 << 20, ..limits.clone() });
                    let mut b = doc.as_bytes();
                    let mut got = None;
                    while let Ok(Some(ev)) = q.next_event(&mut b) {
                        if let StreamEvent::Element(x) = ev {
                            got = Some(x);
                        }
                    }
                    assert_eq!(got.as_ref(), Some(&e), "re-serialized element must parse back");
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
