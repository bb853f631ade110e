//! `muc`: N occupants join one room of the server's MUC service (XEP-0045); S of them send
//! groupchat messages, closed loop (W in flight per sender, a message done once every
//! occupant has its copy) or open loop at a fixed rate. Measures the room's fan-out
//! (deliveries per second, latency) and checks that every occupant got every message.
//!
//! The room is new for each run (a random name unless `--room`), joined without history;
//! if the service reports it created the room (status 201), the first occupant accepts
//! the default configuration (an instant room) before the others join.

use super::fanout::{self, connect_all, Kind, Spec};
use crate::conn::{reply_to_request, write_raw, MUC, MUC_OWNER, MUC_USER};
use crate::opts::Target;
use crate::report::{Errors, Report};
use crate::{options_json, BenchError};
use confab_proto::xml::escape;
use confab_stream::client::ClientSession;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Options of the muc scenario.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct MucOpts {
    /// Occupants of the room (account i mod --users each, one session each).
    #[arg(long, default_value_t = 10)]
    pub occupants: usize,
    /// How many of the occupants send (the first S).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// The MUC service's domain; default `conference.<--domain>`.
    #[arg(long)]
    pub service: Option<String>,
    /// The room's name (local part); default a new random name per run, so no earlier
    /// run's history or occupants meet this one.
    #[arg(long)]
    pub room: Option<String>,
    /// Closed loop: messages in flight per sender.
    #[arg(long, default_value_t = 5)]
    pub window: usize,
    /// Open loop: messages per second over all senders, sent at fixed intended times.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds to wait after the last send for copies still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Bytes of padding added to every body.
    #[arg(long, default_value_t = 0)]
    pub body_padding: usize,
}

impl Default for MucOpts {
    fn default() -> Self {
        MucOpts {
            occupants: 10,
            senders: 2,
            service: None,
            room: None,
            window: 5,
            rate: None,
            drain: 5.0,
            body_padding: 0,
        }
    }
}

/// A name no earlier run used: the time and this process's id.
pub fn fresh_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{:x}{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// Joins `room/nick` without history and waits for the occupant's own presence. `Ok(true)`
/// when the service says it created the room (status 201).
async fn join(
    s: &mut ClientSession,
    occupant: &str,
    timeout: Duration,
) -> Result<bool, BenchError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let join = format!(
        "<presence to='{}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>",
        escape(occupant)
    );
    write_raw(s, &join, timeout).await?;
    loop {
        let e = match tokio::time::timeout_at(deadline, s.recv()).await {
            Ok(r) => r.map_err(BenchError::Client)?,
            Err(_) => return Err(BenchError::Timeout("room join")),
        };
        let ours = e
            .get_attr("from")
            .is_some_and(|f| f.eq_ignore_ascii_case(occupant));
        if e.name == "presence" && ours {
            if e.get_attr("type") == Some("error") {
                return Err(BenchError::Unexpected(format!(
                    "room join refused: {}",
                    e.to_xml(confab_proto::ns::CLIENT)
                )));
            }
            let created = e.get_child("x", MUC_USER).is_some_and(|x| {
                x.elements()
                    .any(|c| c.name == "status" && c.get_attr("code") == Some("201"))
            });
            return Ok(created);
        }
        if let Some(reply) = reply_to_request(&e) {
            write_raw(s, &reply, timeout).await?;
        }
    }
}

/// Accepts the default configuration of a room just created (XEP-0045 §10.1.2, an instant
/// room), so that others may join.
async fn make_instant(
    s: &mut ClientSession,
    room: &str,
    timeout: Duration,
) -> Result<(), BenchError> {
    let id = "bench-instant";
    let iq = format!(
        "<iq type='set' id='{id}' to='{}'><query xmlns='{MUC_OWNER}'>\
         <x xmlns='jabber:x:data' type='submit'/></query></iq>",
        escape(room)
    );
    write_raw(s, &iq, timeout).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let e = match tokio::time::timeout_at(deadline, s.recv()).await {
            Ok(r) => r.map_err(BenchError::Client)?,
            Err(_) => return Err(BenchError::Timeout("room configuration")),
        };
        if e.name == "iq" && e.get_attr("id") == Some(id) {
            return match e.get_attr("type") {
                Some("result") => Ok(()),
                _ => Err(BenchError::Unexpected(format!(
                    "room configuration refused: {}",
                    e.to_xml(confab_proto::ns::CLIENT)
                ))),
            };
        }
        if let Some(reply) = reply_to_request(&e) {
            write_raw(s, &reply, timeout).await?;
        }
    }
}

/// Runs the muc scenario.
pub async fn run(t: &Target, o: &MucOpts) -> Result<Report, BenchError> {
    if o.occupants == 0 || o.senders == 0 || o.senders > o.occupants {
        return Err(BenchError::Usage(
            "--occupants must be at least 1 and --senders in 1..=occupants".into(),
        ));
    }
    fanout::check(o.window, o.rate, o.drain, o.body_padding)?;
    t.check_sockets(o.occupants)?;
    let service = o
        .service
        .clone()
        .unwrap_or_else(|| format!("conference.{}", t.opts.domain));
    let name = o.room.clone().unwrap_or_else(|| fresh_name("bench-"));
    let room = format!("{name}@{service}");
    let errors = Arc::new(Errors::default());
    let setup_start = Instant::now();
    let sessions = connect_all(t, o.occupants, "muc: connecting", "m", |i| i, &errors).await;
    let connected = sessions.iter().filter(|s| s.is_some()).count() as u64;

    // The first occupant that logged in creates the room; the others join after it.
    let mut members: Vec<Option<ClientSession>> = (0..o.occupants).map(|_| None).collect();
    let mut rest = Vec::new();
    let mut first = true;
    for (i, s) in sessions.into_iter().enumerate() {
        let Some(mut s) = s else { continue };
        if !first {
            rest.push((i, s));
            continue;
        }
        first = false;
        let occupant = format!("{room}/o{i}");
        let r = match join(&mut s, &occupant, t.timeout).await {
            Ok(true) => make_instant(&mut s, &room, t.timeout).await,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => members[i] = Some(s),
            Err(e) => {
                // Nobody else can join a room that could not be made.
                errors.record(&e);
                let _ = crate::conn::close(s, t.timeout).await;
                for (_, s) in rest.drain(..) {
                    let _ = crate::conn::close(s, t.timeout).await;
                }
                break;
            }
        }
    }
    let limit = Arc::new(Semaphore::new(t.opts.concurrency));
    let mut joins = tokio::task::JoinSet::new();
    for (i, mut s) in rest {
        let (limit, room, timeout, errors) =
            (limit.clone(), room.clone(), t.timeout, errors.clone());
        joins.spawn(async move {
            let _permit = limit.acquire().await;
            match join(&mut s, &format!("{room}/o{i}"), timeout).await {
                Ok(_) => Some((i, s)),
                Err(e) => {
                    errors.record(&e);
                    let _ = crate::conn::close(s, timeout).await;
                    None
                }
            }
        });
    }
    while let Some(r) = joins.join_next().await {
        if let Ok(Some((i, s))) = r {
            members[i] = Some(s);
        }
    }
    let joined: Vec<usize> = (0..o.occupants).filter(|&i| members[i].is_some()).collect();
    let setup_ms = u64::try_from(setup_start.elapsed().as_millis()).unwrap_or(u64::MAX);

    let mut rep = Report::new("muc", options_json(&t.opts, o));
    rep.set_count("connected", connected);
    rep.set_count("joined", joined.len() as u64);
    rep.set_count("join_failed", o.occupants as u64 - joined.len() as u64);
    rep.set_count("setup_ms", setup_ms);
    if !joined.is_empty() {
        let spec = Spec {
            kind: Kind::Muc { room },
            recipients: vec![joined; o.senders],
            window: o.window,
            rate: o.rate,
            drain: o.drain,
            padding: o.body_padding,
        };
        fanout::run(t, spec, members, &mut rep, "muc").await;
    }
    for (k, v) in errors.take() {
        *rep.errors.entry(k).or_default() += v;
    }
    Ok(rep)
}
