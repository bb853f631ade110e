//! The audit log of admin actions (logins, refused logins, users created or deleted,
//! passwords reset, sessions disconnected, the set-up), kept durably in the store's
//! per-domain data (`DataStore`, kind `admin-audit`) on whichever backend the server runs,
//! bounded to the newest `MAX_ENTRIES`.

use confab_store::Stores;

const KIND: &str = "admin-audit";
/// Entries kept; older ones are removed as new ones arrive.
pub const MAX_ENTRIES: usize = 1000;
/// Longest detail stored (bytes, cut at a character boundary).
const MAX_DETAIL: usize = 512;

/// One recorded action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_DETAIL);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace(['\t', '\n', '\r'], " ")
}

/// Records an action. A storage failure is logged, not fatal: the action itself happened.
pub async fn record(stores: &Stores, actor: &str, action: &str, detail: &str) {
    use rand::Rng;
    let ms = now_ms();
    // Time first so keys sort by time; the random part keeps same-millisecond keys apart.
    let key = format!("{ms:015}-{:08x}", rand::thread_rng().gen::<u32>());
    let value = format!(
        "{}\t{}\t{}\t{}",
        ms / 1000,
        clip(actor),
        clip(action),
        clip(detail)
    );
    if let Err(e) = stores.data.set_host_data("", KIND, &key, &value).await {
        tracing::warn!(error = %e, action, "admin console: audit entry not stored");
        return;
    }
    tracing::info!(actor, action, detail, "admin action");
    trim(stores).await;
}

async fn trim(stores: &Stores) {
    let Ok(mut all) = stores.data.list_host_data("", KIND).await else {
        return;
    };
    if all.len() <= MAX_ENTRIES {
        return;
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let excess = all.len() - MAX_ENTRIES;
    for (key, _) in all.into_iter().take(excess) {
        let _ = stores.data.delete_host_data("", KIND, &key).await;
    }
}

/// The newest `limit` entries, newest first.
pub async fn recent(stores: &Stores, limit: usize) -> Result<Vec<Entry>, confab_store::StoreError> {
    let mut all = stores.data.list_host_data("", KIND).await?;
    all.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(all
        .into_iter()
        .take(limit)
        .filter_map(|(_, v)| {
            let mut it = v.splitn(4, '\t');
            Some(Entry {
                at: it.next()?.parse().ok()?,
                actor: it.next()?.to_string(),
                action: it.next()?.to_string(),
                detail: it.next().unwrap_or_default().to_string(),
            })
        })
        .collect())
}
