//! Extensions plug in here, like XMPPFramework's `XMPPModule`: each module sees every
//! incoming stanza (except iq responses, which go to their `request`) before the
//! application does, may consume it, and may send replies.

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
pub trait Module: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Called for each incoming message, presence and iq get/set, in module order.
    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled;
}
