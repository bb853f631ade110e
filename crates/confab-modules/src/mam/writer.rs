//! Archiving off the delivery path. A message's archive id is chosen when it passes
//! through, so it goes on at once with its stanza id; the rows are written by one task that
//! gathers what is queued into one transaction (`append_archive_many`), in the order the
//! messages passed. One write per message per side would bound chat to what the database
//! commits per second (a few hundred messages on SQLite); batched, to what it writes.
//!
//! What the task has not written yet is lost if the server is killed (the messages
//! themselves were delivered or stored offline: only their archive copies of the last
//! moments go). Reads wait for what is queued (`flush`), so a client always finds in the
//! archive what it was sent; so do the cap trim and shutdown.

use confab_server::ServerCtx;
use confab_store::archive::ArchivedMessage;
use std::sync::OnceLock;
use tokio::sync::{mpsc, oneshot};

/// Messages queued at most; beyond, archiving waits for room (backpressure on senders).
const QUEUE: usize = 4096;
/// Messages written in one transaction at most.
const BATCH: usize = 1000;

enum Job {
    Append(String, String, ArchivedMessage),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
pub(super) struct ArchiveWriter {
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl ArchiveWriter {
    /// Starts the writing task (at server start).
    pub(super) fn start(&self, ctx: &ServerCtx) {
        let (tx, rx) = mpsc::channel(QUEUE);
        if self.tx.set(tx).is_ok() {
            tokio::spawn(run(ctx.clone(), rx));
        }
    }

    /// Queues a row; when the task does not run (not started), writes it here and now.
    pub(super) async fn append(
        &self,
        ctx: &ServerCtx,
        domain: &str,
        username: &str,
        msg: ArchivedMessage,
    ) -> Result<(), String> {
        if let Some(tx) = self.tx.get() {
            let job = Job::Append(domain.to_string(), username.to_string(), msg);
            if tx.send(job).await.is_ok() {
                return Ok(());
            }
            return Err("the archive writer has stopped".into());
        }
        ctx.stores
            .archive
            .append_archive(domain, username, &msg)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until everything queued so far is written (or failed and was logged).
    pub(super) async fn flush(&self) {
        let Some(tx) = self.tx.get() else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if tx.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(ctx: ServerCtx, mut rx: mpsc::Receiver<Job>) {
    let mut rows = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(job) = rx.recv().await {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match job {
                Job::Append(d, u, m) => rows.push((d, u, m)),
                Job::Flush(done) => waiting.push(done),
            }
            if rows.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !rows.is_empty() {
            if let Err(e) = ctx.stores.archive.append_archive_many(&rows).await {
                tracing::error!(error = %e, messages = rows.len(), "archiving messages failed");
            }
            rows.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
