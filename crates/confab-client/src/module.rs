//! Extensions plug in here, like XMPPFramework's `XMPPModule`: each module sees every
//! incoming stanza (except iq responses, which go to their `request`) before the
//! application does, may consume it, and may send replies.

use crate::client::Client;
use confab_proto::{Element, FullJid, Stanza};

/// Whether a module took a stanza.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The module dealt with it; later modules and the application do not see it.
    Consumed,
    /// Not this module's business; pass it on.
    Pass,
}

/// What a module may do while handling a stanza.
pub struct Context<'a> {
    jid: &'a FullJid,
    out: &'a mut Vec<Element>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(jid: &'a FullJid, out: &'a mut Vec<Element>) -> Self {
        Context { jid, out }
    }

    /// The client's bound full JID.
    pub fn jid(&self) -> &FullJid {
        self.jid
    }

    /// Queues an element to write as soon as the handler returns (before the next incoming
    /// stanza is read), e.g. the answer to a request.
    pub fn send(&mut self, el: Element) {
        self.out.push(el);
    }
}

/// A client extension. `handle` runs on the task that owns the stream, so it must not
/// block; work that waits (requests) belongs in the module's own async methods, which take
/// a [`crate::Client`].
#[async_trait::async_trait]
pub trait Module: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Called for each incoming message, presence and iq get/set, in module order.
    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled;

    /// Called after a reconnection that could not resume the old session: the server has
    /// forgotten it, so set the new one up again (send presence, fetch the roster). Runs
    /// on a task of its own, modules one after another in order, so it may make requests.
    /// Not called after a resumption, nor for the first session (the application sets
    /// that up).
    async fn new_session(&self, _client: &Client) {}
}
