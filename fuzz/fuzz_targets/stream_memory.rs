//! Parses arbitrary bytes after a valid stream header and checks what the parser holds in
//! memory stays within a small bound of its limits, whatever the input's shape: the tree a
//! stanza becomes must not grow faster than what `max_stanza_memory` allows (a copy of a
//! namespace per element once let 240 KiB of input hold gigabytes).
#![no_main]

use confab_proto::parser::{Limits, StreamEvent, StreamParser};
use libfuzzer_sys::fuzz_target;
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

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_stanza_size: 64 * 1024,
        max_stanza_memory: 64 * 1024,
        ..Limits::default()
    };
    let budget = 4 * limits.max_stanza_memory + 4 * limits.max_stanza_size + 64 * data.len();
    let mut p = StreamParser::new(limits);
    let mut buf = HEADER;
    let _ = p.next_event(&mut buf);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    // The input repeated makes small inputs reach the limits; elements are dropped as
    // they come, as the server does once it has routed them.
    let reps = (256 * 1024 / data.len().max(1)).clamp(1, 64);
    'feed: for _ in 0..reps {
        let mut buf = data;
        loop {
            match p.next_event(&mut buf) {
                Ok(Some(StreamEvent::Element(e))) => drop(e),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(peak <= budget, "parser held {peak} bytes (budget {budget})");
});
