//! One BOSH session: the requests that carry it (rid order, the window, held requests, the
//! response cache) and its side as a `ServerFraming` for the core's session loop. Request
//! handlers and the session task meet only in `State`, under one short-lived mutex.

use super::body::{self, Terminate};
use async_trait::async_trait;
use bytes::Bytes;
use confab_proto::error::StreamError;
use confab_proto::ns;
use confab_proto::parser::{ParseError, StreamEvent, StreamHeader};
use confab_proto::xml::Element;
use confab_stream::framing::{ServerFraming, WireForm, WireStanza};
use confab_stream::xmlstream::ReadError;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

/// What the session was created with (XEP-0124 §7.1), after our limits.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    pub wait: u64,
    pub hold: usize,
    /// Simultaneous requests allowed, and the rid window: `hold + 1`.
    pub requests: usize,
    pub inactivity: u64,
    /// 0: no pausing.
    pub max_pause: u64,
    /// Payload bytes buffered for the client before the session's writes wait.
    pub max_buffered: usize,
    /// Input bytes received but not yet taken by the session before the client is cut.
    pub max_input: usize,
}

/// One client request, already checked.
pub(crate) struct Request {
    pub rid: u64,
    /// The stream (re)start it asks for: session creation, or `xmpp:restart`.
    pub header: Option<StreamHeader>,
    pub payloads: Vec<Element>,
    pub terminate: bool,
    pub pause: Option<u64>,
    /// Size of the HTTP body, counted as input like bytes on a socket.
    pub size: usize,
    /// The client's response acknowledgement (XEP-0124 §9.2): it has every answer up to
    /// this rid.
    pub ack: Option<u64>,
}

/// How long after an answer was sent a client's `ack` below it counts as a missed answer
/// (reported with `report`/`time`, XEP-0124 §9.2), rather than one still on its way.
const REPORT_AFTER: Duration = Duration::from_millis(500);

/// What an answered request carries.
#[derive(Default)]
struct Reply {
    payloads: Vec<Bytes>,
    end: Option<Terminate>,
}

struct Held {
    rid: u64,
    tx: oneshot::Sender<Reply>,
}

struct State {
    /// The rid the next request in order must carry.
    next_rid: u64,
    /// Requests being handled now (waiting for their turn or held).
    in_flight: usize,
    /// Parsed input for the session loop, with sizes.
    events: VecDeque<(StreamEvent, usize)>,
    input_bytes: usize,
    queued_input: usize,
    input_ready: bool,
    /// Payloads for the client not yet given to a request. Invariant: empty while a
    /// request is held (a push goes to the oldest held request at once).
    outgoing: Vec<Bytes>,
    outgoing_bytes: usize,
    /// Held requests, oldest (lowest rid) first.
    held: VecDeque<Held>,
    /// The last answers, by rid, with when they were sent, for retransmissions (XEP-0124
    /// §14.3) and missed-answer reports (§9.2); those the client acknowledged are dropped.
    cache: VecDeque<(u64, Bytes, Instant)>,
    /// The last rid reported as missed, so one loss is reported once.
    reported: Option<u64>,
    /// Set once the session ends: every later answer is a terminate body.
    end: Option<Terminate>,
    /// Whether some request carried `end` to the client.
    end_delivered: bool,
    /// Since when no request has been in flight.
    idle_since: Instant,
    /// A client pause (XEP-0124 §10) in force: the inactivity allowed meanwhile.
    pause: Option<Duration>,
    stream_id: Option<String>,
    from: Option<String>,
}

pub(crate) struct Session {
    pub sid: String,
    pub params: Params,
    /// The creation request had no `ver`: errors also get XEP-0124 §17.6's HTTP codes.
    pub legacy: bool,
    /// The client asked for acknowledgements (`ack='1'` at creation, XEP-0124 §9): answers
    /// carry `ack`, and its own `ack`s are read.
    pub acks: bool,
    secure: bool,
    state: Mutex<State>,
    /// Wakes the session loop's `read_more` (input, a request ending, the session ending).
    input: Notify,
    /// Wakes requests waiting for their rid's turn.
    turn: Notify,
    /// Bumped whenever buffered payloads are taken, and on end: writes waiting for room.
    room: watch::Sender<u64>,
}

/// A request that cannot be served: the session ends with this condition.
pub(crate) struct Fatal(pub Terminate);

impl Session {
    pub fn new(
        sid: String,
        first_rid: u64,
        params: Params,
        secure: bool,
        legacy: bool,
        acks: bool,
    ) -> Arc<Session> {
        Arc::new(Session {
            sid,
            params,
            legacy,
            acks,
            secure,
            state: Mutex::new(State {
                next_rid: first_rid,
                in_flight: 0,
                events: VecDeque::new(),
                input_bytes: 0,
                queued_input: 0,
                input_ready: false,
                outgoing: Vec::new(),
                outgoing_bytes: 0,
                held: VecDeque::new(),
                cache: VecDeque::new(),
                reported: None,
                end: None,
                end_delivered: false,
                idle_since: Instant::now(),
                pause: None,
                stream_id: None,
                from: None,
            }),
            input: Notify::new(),
            turn: Notify::new(),
            room: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every later request down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session for a request that could not even be matched to a rid.
    pub fn kill(&self, condition: &'static str, why: &str) {
        let mut st = self.lock();
        let _ = self.fatal(&mut st, condition, why);
    }

    pub fn is_ended(&self) -> bool {
        self.lock().end.is_some()
    }

    pub fn end_delivered(&self) -> bool {
        self.lock().end_delivered
    }

    /// Handles one request of this session and returns the body to answer it with; the
    /// creation request (`creation`) gets the session's parameters in its body.
    pub async fn handle(self: &Arc<Self>, req: Request, creation: bool) -> Result<Bytes, Fatal> {
        let rid = req.rid;
        let mut guard = {
            let mut st = self.lock();
            if let Some((_, cached, _)) = st.cache.iter().find(|(r, _, _)| *r == rid) {
                tracing::debug!(sid = %self.sid, rid, "repeated rid answered from the cache");
                return Ok(cached.clone());
            }
            if st.end.is_some() {
                let r = self.take_reply(&mut st);
                return Ok(self.answer(&mut st, rid, r, creation, None));
            }
            if rid < st.next_rid {
                // Neither cached nor held: an answer we no longer have (§14.3).
                if !st.held.iter().any(|h| h.rid == rid) {
                    return Err(self.fatal(&mut st, "item-not-found", "rid already answered"));
                }
            } else if rid - st.next_rid >= self.params.requests as u64 {
                return Err(self.fatal(&mut st, "item-not-found", "rid outside the window"));
            }
            if st.in_flight >= self.params.requests {
                return Err(self.fatal(
                    &mut st,
                    "policy-violation",
                    "more simultaneous requests than allowed",
                ));
            }
            st.in_flight += 1;
            InFlight {
                session: self.clone(),
                rid,
                rx: None,
            }
        };
        // Out-of-order requests within the window wait here for the ones before them.
        let deadline = Instant::now() + Duration::from_secs(self.params.wait);
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.end.is_some() {
                    let r = self.take_reply(&mut st);
                    return Ok(self.answer(&mut st, rid, r, creation, None));
                }
                if rid <= st.next_rid {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut st = self.lock();
                return Err(self.fatal(&mut st, "item-not-found", "a missing rid never came"));
            }
        }
        let mut report = None;
        let rx = {
            let mut st = self.lock();
            if st.next_rid == rid {
                st.next_rid = rid + 1;
                if let (true, Some(ack)) = (self.acks, req.ack) {
                    report = self.acknowledged(&mut st, ack);
                }
                self.turn.notify_waiters();
                if let Err(why) =
                    self.take_input(&mut st, req.header, req.payloads, req.terminate, req.size)
                {
                    return Err(self.fatal(&mut st, "policy-violation", why));
                }
                // A new request ends a pause; a pause request sets one (§10).
                st.pause = None;
                if let Some(p) = req.pause {
                    if self.params.max_pause > 0 {
                        st.pause = Some(Duration::from_secs(p.min(self.params.max_pause)));
                        release_all(&mut st);
                    }
                }
            } else if let Some(i) = st.held.iter().position(|h| h.rid == rid) {
                // The client sent a held request again: the new connection answers it.
                if let Some(old) = st.held.remove(i) {
                    let _ = old.tx.send(Reply::default());
                }
            }
            // A polling client (hold 0) is answered at once, with whatever there is.
            // So is a request whose answer reports a missed one (§9.2).
            let polling = self.params.hold == 0 && !req.terminate;
            if polling
                || report.is_some()
                || st.pause.is_some()
                || !st.outgoing.is_empty()
                || st.end.is_some()
            {
                Some(self.take_reply(&mut st))
            } else {
                let (tx, rx) = oneshot::channel();
                let at = st
                    .held
                    .iter()
                    .position(|h| h.rid > rid)
                    .unwrap_or(st.held.len());
                st.held.insert(at, Held { rid, tx });
                // Beyond `hold`, the oldest is answered (empty) so the client can send
                // again. A terminate request waits for the session to end.
                while st.held.len() > self.params.hold && !req.terminate {
                    match st.held.pop_front() {
                        Some(h) if h.rid == rid => {
                            st.held.push_front(h);
                            break;
                        }
                        Some(h) => {
                            let _ = h.tx.send(Reply::default());
                        }
                        None => break,
                    }
                }
                guard.rx = Some(rx);
                None
            }
        };
        let reply = match rx {
            Some(reply) => reply,
            None => self.wait_reply(&mut guard).await,
        };
        let mut st = self.lock();
        let body = self.answer(&mut st, rid, reply, creation, report);
        Ok(body)
    }

    /// The client has every answer up to `ack`: those leave the cache. An answer after it
    /// that was sent a while ago has not arrived: returned as (rid, milliseconds since it
    /// was sent), once per rid, for `report` and `time`.
    fn acknowledged(&self, st: &mut State, ack: u64) -> Option<(u64, u64)> {
        st.cache.retain(|(r, _, _)| *r > ack);
        let missed = ack.checked_add(1)?;
        let (_, _, sent) = st.cache.iter().find(|(r, _, _)| *r == missed)?;
        let since = sent.elapsed();
        if since < REPORT_AFTER || st.reported.is_some_and(|r| r >= missed) {
            return None;
        }
        st.reported = Some(missed);
        tracing::debug!(sid = %self.sid, rid = missed, "the client missed an answer; reporting it");
        Some((missed, u64::try_from(since.as_millis()).unwrap_or(u64::MAX)))
    }

    /// Waits for the held request's reply, at most `wait`.
    async fn wait_reply(&self, guard: &mut InFlight) -> Reply {
        let Some(rx) = guard.rx.as_mut() else {
            return Reply::default();
        };
        let wait = Duration::from_secs(self.params.wait);
        if let Ok(Ok(r)) = tokio::time::timeout(wait, &mut *rx).await {
            guard.rx = None;
            return r;
        }
        let mut st = self.lock();
        let rid = guard.rid;
        st.held.retain(|h| h.rid != rid);
        // A reply sent just before the lock was taken is kept.
        match guard.rx.take().map(|mut rx| rx.try_recv()) {
            Some(Ok(r)) => r,
            _ => Reply::default(),
        }
    }

    /// Builds the answer to `rid` and remembers it for a retransmission.
    fn answer(
        &self,
        st: &mut State,
        rid: u64,
        reply: Reply,
        creation: bool,
        report: Option<(u64, u64)>,
    ) -> Bytes {
        let creation = creation.then(|| body::Creation {
            sid: &self.sid,
            params: &self.params,
            from: st.from.as_deref(),
            authid: st.stream_id.as_deref(),
        });
        if reply.end.is_some() {
            st.end_delivered = true;
        }
        let mut acks = body::Acks::default();
        if self.acks {
            // The highest rid received with all before it (§9.1); left out when it is
            // this request's own, except on the creation answer.
            let highest = st.next_rid.saturating_sub(1);
            acks.ack = (creation.is_some() || highest != rid).then_some(highest);
            acks.report = report;
        }
        let b = body::response(
            creation.as_ref(),
            &acks,
            &reply.payloads,
            reply.end.as_ref(),
        );
        st.cache.push_back((rid, b.clone(), Instant::now()));
        while st.cache.len() > self.params.requests {
            st.cache.pop_front();
        }
        b
    }

    /// Queues a request's content for the session loop.
    fn take_input(
        &self,
        st: &mut State,
        header: Option<StreamHeader>,
        payloads: Vec<Element>,
        terminate: bool,
        size: usize,
    ) -> Result<(), &'static str> {
        if st.queued_input + size > self.params.max_input {
            return Err("input arrives faster than the session takes it");
        }
        // Each payload carries its share of the body until the session takes it; an empty
        // request queues nothing.
        let share = size / payloads.len().max(1);
        if let Some(h) = header {
            st.events.push_back((StreamEvent::Header(h), 0));
        }
        for p in payloads {
            st.queued_input += share;
            st.events.push_back((StreamEvent::Element(p), share));
        }
        if terminate {
            st.events.push_back((StreamEvent::Close, 0));
        }
        st.input_bytes += size;
        st.input_ready = true;
        self.input.notify_one();
        Ok(())
    }

    /// Everything buffered for the client, and the end if the session ended.
    fn take_reply(&self, st: &mut State) -> Reply {
        let payloads = std::mem::take(&mut st.outgoing);
        st.outgoing_bytes = 0;
        self.room.send_modify(|n| *n += 1);
        Reply {
            payloads,
            end: st.end.clone(),
        }
    }

    /// Ends the session because of a request: the session loop sees its connection gone
    /// (and stream management may park it); held requests get the terminate body.
    fn fatal(&self, st: &mut State, condition: &'static str, why: &str) -> Fatal {
        tracing::info!(sid = %self.sid, condition, why, "BOSH session terminated");
        let t = Terminate::new(condition);
        self.end(st, t.clone());
        Fatal(t)
    }

    fn end(&self, st: &mut State, t: Terminate) {
        if st.end.is_none() {
            st.end = Some(t);
        }
        // The oldest held request carries what was still buffered.
        while let Some(h) = st.held.pop_front() {
            let reply = self.take_reply(st);
            if h.tx.send(reply).is_ok() {
                st.end_delivered = true;
            }
        }
        self.room.send_modify(|n| *n += 1);
        self.input.notify_one();
    }

    /// Called once the session loop is over, however it ended.
    pub fn finished(&self) {
        let mut st = self.lock();
        self.end(&mut st, Terminate::new("item-not-found"));
    }

    /// Buffers payloads for the client: given to the oldest held request at once, else
    /// kept for the next request. Waits while too much is buffered (a client that stopped
    /// asking), which the session loop's write timeout bounds.
    async fn push(&self, payload: Bytes) -> io::Result<()> {
        let mut room = self.room.subscribe();
        loop {
            {
                let mut st = self.lock();
                if st.end.is_some() {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                if st.outgoing_bytes < self.params.max_buffered {
                    st.outgoing_bytes += payload.len();
                    st.outgoing.push(payload);
                    if let Some(h) = st.held.pop_front() {
                        let reply = self.take_reply(&mut st);
                        // Held requests leave the list before they drop their receiver.
                        let _ = h.tx.send(reply);
                    }
                    return Ok(());
                }
                room.borrow_and_update();
            }
            if room.changed().await.is_err() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
    }
}

/// Answers every held request now (a pause).
fn release_all(st: &mut State) {
    while let Some(h) = st.held.pop_front() {
        let _ = h.tx.send(Reply::default());
    }
}

/// One request in flight; dropping it (answered, or the client went away) updates the
/// session, and gives back a reply that never reached the client.
struct InFlight {
    session: Arc<Session>,
    rid: u64,
    rx: Option<oneshot::Receiver<Reply>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.session;
        let mut st = s.lock();
        let rid = self.rid;
        st.held.retain(|h| h.rid != rid);
        if let Some(Ok(lost)) = self.rx.take().map(|mut rx| rx.try_recv()) {
            if !lost.payloads.is_empty() {
                let mut back = lost.payloads;
                st.outgoing_bytes += back.iter().map(Bytes::len).sum::<usize>();
                back.append(&mut st.outgoing);
                st.outgoing = back;
                if let Some(h) = st.held.pop_front() {
                    let reply = s.take_reply(&mut st);
                    let _ = h.tx.send(reply);
                }
            }
        }
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.in_flight == 0 {
            st.idle_since = Instant::now();
        }
        s.input.notify_one();
    }
}

/// The session's side for the core's negotiation and session loop.
pub(crate) struct BoshFraming(pub Arc<Session>);

fn element_xml(e: &Element) -> Bytes {
    // Stream-namespace elements use the `stream` prefix the body declares; others declare
    // their own namespace, as the body's default is the BOSH one.
    if *e.ns == *ns::STREAM {
        Bytes::from(e.to_stream_xml(ns::CLIENT))
    } else {
        Bytes::from(e.to_xml(""))
    }
}

#[async_trait]
impl ServerFraming for BoshFraming {
    fn next_buffered(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        let mut st = self.0.lock();
        Ok(st.events.pop_front().map(|(ev, n)| {
            st.queued_input = st.queued_input.saturating_sub(n);
            ev
        }))
    }

    async fn read_more(&mut self) -> Result<usize, ReadError> {
        let s = &self.0;
        loop {
            let deadline = {
                let mut st = s.lock();
                if st.end.is_some() {
                    return Err(ReadError::Eof);
                }
                if st.input_ready {
                    // Every request counts as activity, even an empty one.
                    st.input_ready = false;
                    return Ok(std::mem::take(&mut st.input_bytes));
                }
                (st.in_flight == 0).then(|| {
                    let allowed = st.pause.unwrap_or(Duration::from_secs(s.params.inactivity));
                    st.idle_since + allowed
                })
            };
            match deadline {
                None => s.input.notified().await,
                Some(at) => {
                    if tokio::time::timeout_at(at, s.input.notified())
                        .await
                        .is_err()
                    {
                        let mut st = s.lock();
                        if st.in_flight == 0 && Instant::now() >= at {
                            tracing::info!(sid = %s.sid, "BOSH session inactive; ended");
                            s.end(&mut st, Terminate::new("item-not-found"));
                            return Err(ReadError::Eof);
                        }
                    }
                }
            }
        }
    }

    async fn open(&mut self, from: &str, id: &str, features: &Element) -> io::Result<()> {
        {
            let mut st = self.0.lock();
            st.from = Some(from.to_string());
            st.stream_id = Some(id.to_string());
        }
        self.0.push(element_xml(features)).await
    }

    async fn send_element(&mut self, e: &Element) -> io::Result<()> {
        self.0.push(element_xml(e)).await
    }

    async fn send_stanzas(&mut self, stanzas: &[WireStanza]) -> io::Result<()> {
        for s in stanzas {
            // The framed form declares `jabber:client`, which a body child needs.
            self.0.push(s.framed_form().clone()).await?;
        }
        Ok(())
    }

    async fn close(&mut self, error: Option<&StreamError>, _opened: bool) -> io::Result<()> {
        let t = match error {
            None => Terminate::new(""),
            Some(e) => Terminate::from_stream_error(e),
        };
        let mut st = self.0.lock();
        self.0.end(&mut st, t);
        Ok(())
    }

    async fn keepalive(&mut self) -> io::Result<()> {
        // Held requests answered at `wait` keep the client's connections alive.
        Ok(())
    }

    fn restart(&mut self) {}

    fn release_buffers(&mut self) {
        let mut st = self.0.lock();
        if st.events.is_empty() {
            st.events = VecDeque::new();
        }
    }

    fn is_secure(&self) -> bool {
        self.0.secure
    }

    fn transport(&self) -> &'static str {
        "bosh"
    }

    fn wire_form(&self) -> WireForm {
        WireForm::Framed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            wait: 10,
            hold: 1,
            requests: 2,
            inactivity: 60,
            max_pause: 0,
            max_buffered: 1000,
            max_input: 1000,
        }
    }

    #[test]
    fn input_is_counted_until_the_session_takes_it() {
        let s = Session::new("s".into(), 1, params(), false, false, false);
        {
            let mut st = s.lock();
            // Empty polls, however many, queue nothing.
            for _ in 0..1000 {
                assert!(s.take_input(&mut st, None, vec![], false, 500).is_ok());
            }
            assert_eq!(st.queued_input, 0);
            let two = vec![
                Element::new("presence", ns::CLIENT),
                Element::new("presence", ns::CLIENT),
            ];
            assert!(s.take_input(&mut st, None, two, false, 600).is_ok());
            assert_eq!(st.queued_input, 600);
            let more = vec![Element::new("presence", ns::CLIENT)];
            assert!(s.take_input(&mut st, None, more, false, 600).is_err());
        }
        let mut f = BoshFraming(s.clone());
        while let Ok(Some(_)) = f.next_buffered() {}
        assert_eq!(s.lock().queued_input, 0);
    }
}
