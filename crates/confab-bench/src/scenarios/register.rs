//! `register`: in-band registration (XEP-0077) of `<prefix>0 .. <prefix>N-1`.

use crate::conn::PreAuth;
use crate::opts::Target;
use crate::report::{Errors, Progress, Report};
use crate::stats::{rate, Histogram};
use crate::{for_each_index, options_json, BenchError};
use confab_proto::ns;
use confab_proto::xml::{escape, Element};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// XEP-0077's namespace.
pub const NS: &str = "jabber:iq:register";

/// How one registration ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The account was created.
    Registered,
    /// `<conflict/>`: the account exists (an earlier run made it).
    Existing,
    /// Any other error reply, by condition name.
    Refused(String),
}

/// Reads the reply to the registration IQ.
pub fn outcome(reply: &Element) -> Outcome {
    match reply.get_attr("type") {
        Some("result") => Outcome::Registered,
        _ => {
            let cond = reply
                .get_child("error", ns::CLIENT)
                .and_then(|e| {
                    e.elements()
                        .find(|c| c.ns.as_str() == ns::STANZAS && c.name != "text")
                })
                .map(|c| c.name.clone())
                .unwrap_or_else(|| "no error condition".into());
            if cond == "conflict" {
                Outcome::Existing
            } else {
                Outcome::Refused(cond)
            }
        }
    }
}

async fn register_one(t: &Target, i: usize) -> Result<Outcome, BenchError> {
    let mut s = PreAuth::connect(t).await?;
    let id = "bench-reg";
    s.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='{NS}'><username>{}</username>\
         <password>{}</password></query></iq>",
        escape(&t.username(i)),
        escape(&t.opts.password)
    ))
    .await?;
    // Bounded: the caller's timeout ends this loop, and a server sends little before
    // authentication.
    let reply = loop {
        let e = s.recv().await?;
        if e.name == "iq" && e.get_attr("id") == Some(id) {
            break e;
        }
    };
    s.close().await;
    Ok(outcome(&reply))
}

/// Registers every account once, `--concurrency` at a time, within `--duration`.
pub async fn run(t: &Target) -> Result<Report, BenchError> {
    t.check_sockets(t.opts.concurrency)?;
    let n = t.opts.users;
    let registered = Arc::new(AtomicU64::new(0));
    let existing = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let hist = Arc::new(Mutex::new(Histogram::new()));
    let progress = {
        let (r, e, f) = (registered.clone(), existing.clone(), failed.clone());
        Progress::start(t.opts.quiet, "register", move || {
            format!(
                "registered {}  existing {}  failed {}  of {n}",
                r.load(Ordering::Relaxed),
                e.load(Ordering::Relaxed),
                f.load(Ordering::Relaxed)
            )
        })
    };
    let start = Instant::now();
    let started = {
        let t = Arc::new(t.clone());
        let (r, e, f, errors, hist) = (
            registered.clone(),
            existing.clone(),
            failed.clone(),
            errors.clone(),
            hist.clone(),
        );
        for_each_index(n, t.opts.concurrency, start + t.duration, move |i| {
            let (t, r, e, f, errors, hist) = (
                t.clone(),
                r.clone(),
                e.clone(),
                f.clone(),
                errors.clone(),
                hist.clone(),
            );
            async move {
                let t0 = Instant::now();
                let res = match tokio::time::timeout(t.timeout, register_one(&t, i)).await {
                    Ok(r) => r,
                    Err(_) => Err(BenchError::Timeout("registration")),
                };
                match res {
                    Ok(Outcome::Registered) => {
                        r.fetch_add(1, Ordering::Relaxed);
                        hist.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .record_duration(t0.elapsed());
                    }
                    Ok(Outcome::Existing) => {
                        e.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Outcome::Refused(cond)) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.record_text(&format!("registration refused: {cond}"));
                    }
                    Err(err) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.record(&err);
                    }
                }
            }
        })
        .await
    };
    let elapsed = start.elapsed();
    drop(progress);
    let mut rep = Report::new("register", options_json(&t.opts, ()));
    rep.elapsed_s = elapsed.as_secs_f64();
    let (r, e, f) = (
        registered.load(Ordering::Relaxed),
        existing.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    rep.set_count("requested", n as u64);
    rep.set_count("attempted", started as u64);
    rep.set_count("registered", r);
    rep.set_count("existing", e);
    rep.set_count("failed", f);
    rep.set_rate("registrations_per_s", rate(r, elapsed));
    rep.set_rate("attempts_per_s", rate(r + e + f, elapsed));
    rep.set_latency(
        "registration",
        hist.lock().unwrap_or_else(|p| p.into_inner()).summary(),
    );
    rep.errors = errors.take();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_reply(cond: &str) -> Element {
        Element::new("iq", ns::CLIENT).attr("type", "error").child(
            Element::new("error", ns::CLIENT)
                .attr("type", "cancel")
                .child(Element::new(cond, ns::STANZAS))
                .child(Element::new("text", ns::STANZAS).text("why")),
        )
    }

    #[test]
    fn outcomes() {
        let ok = Element::new("iq", ns::CLIENT).attr("type", "result");
        assert_eq!(outcome(&ok), Outcome::Registered);
        assert_eq!(outcome(&error_reply("conflict")), Outcome::Existing);
        assert_eq!(
            outcome(&error_reply("not-acceptable")),
            Outcome::Refused("not-acceptable".into())
        );
        let bare = Element::new("iq", ns::CLIENT).attr("type", "error");
        assert_eq!(
            outcome(&bare),
            Outcome::Refused("no error condition".into())
        );
    }
}
