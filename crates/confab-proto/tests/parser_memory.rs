//! What a parsed stanza holds in memory is bounded, not only what it sends: measured with
//! a counting allocator, so a tree that copies data per element fails here.

use confab_proto::parser::{Limits, ParseError, StreamEvent, StreamParser};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A stanza whose children all inherit one long namespace.
fn shared_namespace_stanza(ns_len: usize, children: usize) -> String {
    format!(
        "<message><x xmlns='urn:{}'>{}</x></message>",
        "n".repeat(ns_len),
        "<a/>".repeat(children)
    )
}

/// Parses the header and one stanza; returns the outcome and the peak bytes allocated
/// above what was live before.
fn parse_measured(limits: Limits, stanza: &str) -> (Result<(), ParseError>, usize) {
    let mut p = StreamParser::new(limits);
    let mut buf = HEADER.as_bytes();
    assert!(matches!(
        p.next_event(&mut buf),
        Ok(Some(StreamEvent::Header(_)))
    ));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut buf = stanza.as_bytes();
    let outcome = loop {
        match p.next_event(&mut buf) {
            Ok(Some(StreamEvent::Element(e))) => {
                drop(e);
                break Ok(());
            }
            Ok(Some(_)) => continue,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (outcome, peak)
}

// One test function: the allocator counts the whole process, so cases must not overlap.
#[test]
fn stanza_memory_is_bounded() {
    // The shape of the reported attack (~240 KiB, under the size limit), with default limits:
    // refused once the tree would hold more than `max_stanza_memory`, long before gigabytes.
    let attack = shared_namespace_stanza(120 * 1024, 30_000);
    assert!(attack.len() < Limits::default().max_stanza_size);
    let (outcome, peak) = parse_measured(Limits::default(), &attack);
    assert!(
        matches!(outcome, Err(ParseError::PolicyViolation(_))),
        "{outcome:?}"
    );
    assert!(peak < 8 * 1024 * 1024, "held {peak} bytes");

    // Under a generous memory limit the same shape parses, and the tree shares the namespace:
    // it costs a small multiple of the input, not the namespace once per child.
    let roomy = Limits {
        max_stanza_memory: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let stanza = shared_namespace_stanza(8 * 1024, 2_000);
    let (outcome, peak) = parse_measured(roomy, &stanza);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(
        peak < 64 * stanza.len(),
        "a {} byte stanza held {peak} bytes",
        stanza.len()
    );

    // An ordinary large body is unaffected by the memory limit.
    let body = format!("<message><body>{}</body></message>", "b".repeat(200 * 1024));
    let (outcome, _) = parse_measured(Limits::default(), &body);
    assert!(outcome.is_ok(), "{outcome:?}");
}
