//! Writing behind: per-account documents that need not be durable at once (last activity
//! and the last unavailable presence, written at every logout) are kept in memory and
//! written in one batch — one transaction, one sync of the database's log — a moment later,
//! instead of one synced transaction each on the login/logout path.
//!
//! Reads see a held-back document at once. What is held is bounded (`max_pending`); beyond
//! it a write goes straight to the store. A batch that fails stays held (a newer write of
//! the same document wins) and is tried again on the next round; the error is logged, and
//! `flush` (at shutdown) reports it. A crash loses at most the last `interval` of such
//! documents — never messages, rosters or accounts, which are always written through.

use crate::account_data::{AccountDataWrite, DataStore};
use crate::Result;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// (domain, username, kind, key)
type Key = (String, String, String, String);

/// Documents held back, and the batch being written (still what reads must see).
#[derive(Default)]
struct Held {
    pending: BTreeMap<Key, String>,
    in_flight: BTreeMap<Key, String>,
}

impl Held {
    fn get(&self, k: &Key) -> Option<&String> {
        self.pending.get(k).or_else(|| self.in_flight.get(k))
    }

    /// Pending first, then in flight: the newest value of each document.
    fn iter(&self) -> impl Iterator<Item = (&Key, &String)> {
        self.in_flight
            .iter()
            .filter(|(k, _)| !self.pending.contains_key(*k))
            .chain(self.pending.iter())
    }
}

/// A `DataStore` that holds back `set_account_data_lazily` writes; everything else goes
/// straight to the store it wraps.
pub struct WriteBehind {
    inner: Arc<dyn DataStore>,
    pending: Mutex<Held>,
    /// Written through writes hold it shared, a batch exclusively: a batch in flight never
    /// lands after (and over) a newer direct write of the same document, and batches never
    /// overtake each other.
    order: tokio::sync::RwLock<()>,
    max_pending: usize,
}

impl WriteBehind {
    /// Wraps `inner`; a task writes what is held every `interval` until the returned store
    /// is dropped.
    pub fn new(inner: Arc<dyn DataStore>, interval: Duration, max_pending: usize) -> Arc<Self> {
        let wb = Arc::new(WriteBehind {
            inner,
            pending: Mutex::new(Held::default()),
            order: tokio::sync::RwLock::new(()),
            max_pending: max_pending.max(1),
        });
        tokio::spawn(flush_loop(Arc::downgrade(&wb), interval));
        wb
    }

    /// Documents held back now.
    pub fn pending(&self) -> usize {
        let h = self.lock();
        h.pending.len() + h.in_flight.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic while holding the map cannot leave it half-changed (single inserts and
        // removals), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held(&self, domain: &str, username: &str, kind: &str, key: &str) -> Option<String> {
        self.lock()
            .get(&(domain.into(), username.into(), kind.into(), key.into()))
            .cloned()
    }

    /// Forgets a held-back document (a direct write or a deletion replaces it).
    fn drop_held(&self, k: &Key) -> bool {
        let mut h = self.lock();
        let a = h.pending.remove(k).is_some();
        let b = h.in_flight.remove(k).is_some();
        a || b
    }

    /// Writes what is held now, in one batch. On failure the documents stay held unless
    /// newer writes replaced them.
    async fn write_pending(&self) -> Result<()> {
        let _alone = self.order.write().await;
        let batch: Vec<AccountDataWrite> = {
            let mut h = self.lock();
            if h.pending.is_empty() {
                return Ok(());
            }
            h.in_flight = std::mem::take(&mut h.pending);
            h.in_flight
                .iter()
                .map(|((domain, username, kind, key), value)| AccountDataWrite {
                    domain: domain.clone(),
                    username: username.clone(),
                    kind: kind.clone(),
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect()
        };
        let mut failed = Vec::new();
        let mut error = None;
        if let Err(e) = self.inner.set_account_data_batch(&batch).await {
            // One bad document must not hold back the others: each on its own, and only
            // what still fails is kept.
            tracing::warn!(error = %e, documents = batch.len(), "a batch of held-back documents failed; writing them one by one");
            for w in batch {
                let one = std::slice::from_ref(&w);
                if let Err(e) = self.inner.set_account_data_batch(one).await {
                    failed.push(w);
                    error = Some(e);
                }
            }
        }
        let mut h = self.lock();
        h.in_flight.clear();
        // Held again, unless a newer write of the same document came meanwhile.
        for w in failed {
            h.pending
                .entry((w.domain, w.username, w.kind, w.key))
                .or_insert(w.value);
        }
        match error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

async fn flush_loop(wb: Weak<WriteBehind>, interval: Duration) {
    loop {
        // The store is not kept alive while waiting.
        tokio::time::sleep(interval).await;
        let Some(w) = wb.upgrade() else { return };
        if let Err(e) = w.write_pending().await {
            tracing::error!(error = %e, held = w.pending(), "writing held-back documents failed; kept for the next try");
        }
    }
}

#[async_trait]
impl DataStore for WriteBehind {
    async fn get_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>> {
        if let Some(v) = self.held(domain, username, kind, key) {
            return Ok(Some(v));
        }
        self.inner
            .get_account_data(domain, username, kind, key)
            .await
    }

    async fn set_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        // Written through: a held-back older value must not overwrite it later.
        let _ordered = self.order.read().await;
        self.drop_held(&(domain.into(), username.into(), kind.into(), key.into()));
        self.inner
            .set_account_data(domain, username, kind, key, value)
            .await
    }

    async fn set_account_data_batch(&self, items: &[AccountDataWrite]) -> Result<usize> {
        let _ordered = self.order.read().await;
        for w in items {
            self.drop_held(&(
                w.domain.clone(),
                w.username.clone(),
                w.kind.clone(),
                w.key.clone(),
            ));
        }
        self.inner.set_account_data_batch(items).await
    }

    async fn set_account_data_lazily(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let full = {
            let mut h = self.lock();
            let k = (domain.into(), username.into(), kind.into(), key.into());
            if h.pending.len() + h.in_flight.len() >= self.max_pending
                && !h.pending.contains_key(&k)
            {
                true
            } else {
                h.pending.insert(k, value.into());
                false
            }
        };
        if full {
            // Bounded memory: with this much held (the database is slow or away), write
            // through and let the caller see what the store says.
            return self
                .set_account_data(domain, username, kind, key, value)
                .await;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        self.write_pending().await?;
        self.inner.flush().await
    }

    fn forget_held(&self, domain: &str, username: &str) {
        let mut h = self.lock();
        let of_account = |(d, u, _, _): &Key| d == domain && u == username;
        h.pending.retain(|k, _| !of_account(k));
        // A batch in flight still writes its copy; it skips accounts that are gone.
        h.in_flight.retain(|k, _| !of_account(k));
    }

    async fn delete_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<bool> {
        let _ordered = self.order.read().await;
        let held = self.drop_held(&(domain.into(), username.into(), kind.into(), key.into()));
        let deleted = self
            .inner
            .delete_account_data(domain, username, kind, key)
            .await?;
        Ok(held || deleted)
    }

    async fn list_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
    ) -> Result<Vec<(String, String)>> {
        // What is held is taken before the database is read: a batch landing in between
        // then only makes the database agree with it.
        let held: Vec<(String, String)> = self
            .lock()
            .iter()
            .filter(|((d, u, k, _), _)| d == domain && u == username && k == kind)
            .map(|((_, _, _, key), v)| (key.clone(), v.clone()))
            .collect();
        let mut all: BTreeMap<String, String> = self
            .inner
            .list_account_data(domain, username, kind)
            .await?
            .into_iter()
            .collect();
        all.extend(held);
        Ok(all.into_iter().collect())
    }

    async fn all_account_data(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, String, String)>> {
        let held: Vec<((String, String), String)> = self
            .lock()
            .iter()
            .filter(|((d, u, _, _), _)| d == domain && u == username)
            .map(|((_, _, k, key), v)| ((k.clone(), key.clone()), v.clone()))
            .collect();
        let mut all: BTreeMap<(String, String), String> = self
            .inner
            .all_account_data(domain, username)
            .await?
            .into_iter()
            .map(|(k, key, v)| ((k, key), v))
            .collect();
        all.extend(held);
        Ok(all.into_iter().map(|((k, key), v)| (k, key, v)).collect())
    }

    async fn get_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<Option<String>> {
        self.inner.get_host_data(domain, kind, key).await
    }

    async fn set_host_data(&self, domain: &str, kind: &str, key: &str, value: &str) -> Result<()> {
        self.inner.set_host_data(domain, kind, key, value).await
    }

    async fn delete_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<bool> {
        self.inner.delete_host_data(domain, kind, key).await
    }

    async fn list_host_data(&self, domain: &str, kind: &str) -> Result<Vec<(String, String)>> {
        self.inner.list_host_data(domain, kind).await
    }

    async fn host_data_domains(&self) -> Result<Vec<String>> {
        self.inner.host_data_domains().await
    }

    async fn all_host_data(&self, domain: &str) -> Result<Vec<(String, String, String)>> {
        self.inner.all_host_data(domain).await
    }
}
