//! Writing room archives off the rooms' locks. A room gives each message its stanza-id and
//! queues the archive row while it holds its lock, so rows are queued in the room's order;
//! one task writes them in that order. A room then waits for the database only when the
//! queue is full, not for every message.
//!
//! Whoever reads a room's archive — a MAM query, moderation or an author's retraction
//! looking for the message, the metadata, a vanishing room deleting it — first waits for
//! what is queued (`flush`), so every stanza-id a client was sent is found, and a
//! tombstone or a deletion never comes before the row it concerns.
//!
//! Rows still queued when the process is killed are lost (the messages were delivered);
//! shutdown flushes.

use confab_server::ServerCtx;
use confab_store::{RoomArchiveStore, RoomMessage};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

enum Job {
    Append {
        service: String,
        room: String,
        msg: RoomMessage,
    },
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
pub(crate) struct RoomArchiveWriter {
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl RoomArchiveWriter {
    /// Starts the writing task (at server start) with a queue of `capacity` rows.
    pub(crate) fn start(&self, ctx: &ServerCtx, capacity: usize) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if self.tx.set(tx).is_ok() {
            // The task holds the store, not the server: the server's registry holds this
            // writer (and its sender), so holding the server would keep both alive forever
            // after a restart (the set-up wizard's) — with the old database pool.
            tokio::spawn(run(ctx.stores.room_archive.clone(), rx));
        }
    }

    /// Queues a row (waiting while the queue is full); before the task runs, writes it
    /// here. A failure is logged: the message still goes out.
    pub(crate) async fn append(
        &self,
        ctx: &ServerCtx,
        service: &str,
        room: &str,
        msg: RoomMessage,
    ) {
        if let Some(tx) = self.tx.get() {
            let job = Job::Append {
                service: service.to_string(),
                room: room.to_string(),
                msg,
            };
            if tx.send(job).await.is_err() {
                tracing::error!(room, service, "the room archive writer has stopped");
            }
            return;
        }
        write(&ctx.stores.room_archive, service, room, &msg).await;
    }

    /// Waits until everything queued so far is written (or failed and was logged).
    pub(crate) async fn flush(&self) {
        let Some(tx) = self.tx.get() else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if tx.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write(store: &Arc<dyn RoomArchiveStore>, service: &str, room: &str, msg: &RoomMessage) {
    let r = store.append_room_message(service, room, msg).await;
    if let Err(e) = r {
        // The message went out anyway: the archive is not a reason to lose it.
        tracing::error!(error = %e, room, service, "archiving a room message failed");
    }
}

async fn run(store: Arc<dyn RoomArchiveStore>, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Append { service, room, msg } => write(&store, &service, &room, &msg).await,
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
