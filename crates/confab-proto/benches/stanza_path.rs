//! The per-stanza hot path of the server, without I/O: parse a chat message from a stream,
//! classify it as a stanza (JID parsing), stamp `from`, and serialize it once for delivery.
//! Run with `cargo bench -p confab-proto`.

use confab_proto::jid::Jid;
use confab_proto::parser::{Limits, StreamEvent, StreamParser};
use confab_proto::stanza::Stanza;
use confab_proto::{ns, sasl};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const MESSAGE: &str = "<message to='juliet@example.com' type='chat' id='a1b2c3'>\
    <body>Wherefore art thou, Romeo? 😀</body>\
    <active xmlns='http://jabber.org/protocol/chatstates'/>\
    <request xmlns='urn:xmpp:receipts'/></message>";

fn stanza_path(c: &mut Criterion) {
    let batch: String = std::iter::repeat_n(MESSAGE, 100).collect();
    let mut g = c.benchmark_group("stanza_path");
    g.throughput(Throughput::Elements(100));
    g.bench_function("parse_100_messages", |b| {
        b.iter(|| {
            let mut p = StreamParser::new(Limits::default());
            let mut buf = HEADER.as_bytes();
            let _ = p.next_event(&mut buf);
            let mut buf = batch.as_bytes();
            let mut n = 0;
            while let Ok(Some(ev)) = p.next_event(&mut buf) {
                if let StreamEvent::Element(e) = ev {
                    n += black_box(e).children.len();
                }
            }
            n
        })
    });
    let mut p = StreamParser::new(Limits::default());
    let doc = format!("{HEADER}{MESSAGE}");
    let mut buf = doc.as_bytes();
    let el = loop {
        match p.next_event(&mut buf) {
            Ok(Some(StreamEvent::Element(e))) => break e,
            Ok(Some(_)) => continue,
            _ => panic!("benchmark input must parse"),
        }
    };
    let from = Jid::new("romeo@example.net/orchard").expect("valid JID");
    g.throughput(Throughput::Elements(1));
    g.bench_function("classify_stamp_serialize", |b| {
        b.iter(|| {
            let mut s = Stanza::from_element(black_box(el.clone())).expect("a stanza");
            s.set_from(Some(from.clone()));
            s.el.to_xml(ns::CLIENT)
        })
    });
    g.finish();
}

fn scram(c: &mut Criterion) {
    // The cost a login pays per stored hash at the default iteration count.
    c.bench_function("scram_sha256_derive_4096", |b| {
        b.iter(|| {
            sasl::ScramCredentials::derive(
                sasl::ScramHash::Sha256,
                black_box("pencil"),
                b"saltsalt",
                4096,
            )
        })
    });
}

criterion_group!(benches, stanza_path, scram);
criterion_main!(benches);
