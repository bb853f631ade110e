//! A room's fan-out to 100 occupants without I/O: the room's groupchat action (checks,
//! reflection, history, one delivery per occupant), then what the router's
//! `deliver_addressed` fast path does with it (one serialization, the recipient's address
//! spliced into each copy). Run with `cargo bench -p confab-muc --bench fanout`.

use bytes::Bytes;
use confab_muc::payloads::Join;
use confab_muc::room::{Limits, Out, Room};
use confab_proto::jid::{BareJid, FullJid};
use confab_proto::ns;
use confab_proto::xml::{escape, Element};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const OCCUPANTS: usize = 100;

fn room_of(n: usize, lim: &Limits) -> (Room, Vec<FullJid>) {
    let owner = BareJid::new("u0@example.com").expect("valid JID");
    let mut room = Room::new(
        BareJid::new("bench@conference.example.com").expect("valid JID"),
        owner,
    );
    room.locked = false;
    let presence = Element::new("presence", ns::CLIENT);
    let mut who = Vec::new();
    for i in 0..n {
        let jid = FullJid::new(&format!("u{i}@example.com/r")).expect("valid JID");
        let join = Join {
            password: None,
            history: None,
        };
        let mut out = Out::default();
        room.join(
            lim,
            &jid,
            &format!("n{i}"),
            false,
            &presence,
            &join,
            i == 0,
            format!("id{i}"),
            0,
            &mut out,
        )
        .expect("joins");
        who.push(jid);
    }
    (room, who)
}

fn fanout(c: &mut Criterion) {
    let lim = Limits {
        max_occupants: 1000,
        max_affiliations: 1000,
        max_sessions_per_nick: 10,
        history_max: 20,
        history_max_bytes: 256 * 1024,
        message_rate: 0.0,
        message_burst: 10,
        max_avatar_bytes: 64 * 1024,
    };
    let (mut room, who) = room_of(OCCUPANTS, &lim);
    let msg = Element::new("message", ns::CLIENT)
        .attr("type", "groupchat")
        .attr("to", "bench@conference.example.com")
        .attr("id", "m1")
        .child(Element::new("body", ns::CLIENT).text("Wherefore art thou, Romeo? 😀"));
    let mut g = c.benchmark_group("muc_fanout_100");
    g.throughput(Throughput::Elements(OCCUPANTS as u64));
    g.bench_function("room_groupchat", |b| {
        b.iter(|| {
            let mut out = Out::default();
            room.groupchat(&lim, &who[1], black_box(&msg), 0, &mut out)
                .expect("accepted");
            out.deliver.len()
        })
    });
    g.bench_function("room_groupchat_and_wire_copies", |b| {
        b.iter(|| {
            let mut out = Out::default();
            room.groupchat(&lim, &who[1], black_box(&msg), 0, &mut out)
                .expect("accepted");
            // As router::deliver_addressed: serialize once, splice each `to`.
            let Some((el, _)) = out.deliver.first() else {
                return 0;
            };
            let xml = el.to_xml(ns::CLIENT);
            let cut = 1 + el.name.len();
            let (head, tail) = xml.as_bytes().split_at(cut.min(xml.len()));
            let mut bytes = 0;
            for (_, to) in &out.deliver {
                let to = escape(to.as_str());
                let mut v = Vec::with_capacity(xml.len() + to.len() + 6);
                v.extend_from_slice(head);
                v.extend_from_slice(b" to='");
                v.extend_from_slice(to.as_bytes());
                v.push(b'\'');
                v.extend_from_slice(tail);
                bytes += black_box(Bytes::from(v)).len();
            }
            bytes
        })
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
