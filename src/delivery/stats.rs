//! Queue depth figures (for `betomail queue stats` and monitoring).

use crate::store::{RecipientState, Store};
use serde::Serialize;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub messages: usize,
    /// Recipients by state.
    pub pending: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Pending recipients whose next try is now or past.
    pub due: usize,
    /// Age of the oldest queued message, in seconds.
    pub oldest_age_seconds: Option<u64>,
    pub bytes: u64,
}

/// Reads the whole queue index; blocking (call through `Store::run`).
pub fn queue_stats(store: &Store) -> crate::store::Result<QueueStats> {
    let now = SystemTime::now();
    let mut st = QueueStats::default();
    let mut oldest: Option<SystemTime> = None;
    for m in store.queue.list()? {
        st.messages += 1;
        st.bytes += m.size;
        oldest = Some(oldest.map_or(m.created, |o| o.min(m.created)));
        for r in &m.recipients {
            match r.state {
                RecipientState::Pending => {
                    st.pending += 1;
                    st.due += (r.next_try <= now) as usize;
                }
                RecipientState::Delivered => st.delivered += 1,
                RecipientState::Failed => st.failed += 1,
            }
        }
    }
    st.oldest_age_seconds =
        oldest.map(|o| now.duration_since(o).unwrap_or(Duration::ZERO).as_secs());
    Ok(st)
}
