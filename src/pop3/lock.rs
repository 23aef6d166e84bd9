//! The mailbox lock of one POP3 session (SEED-6): taken at login with a
//! short TTL, refreshed while the session lives, released when it ends in
//! any way, including the task being dropped. A process that dies leaves a
//! lock that lapses within `LOCK_TTL`.

use crate::store::Store;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const LOCK_TTL: Duration = Duration::from_secs(45);
pub const LOCK_REFRESH: Duration = Duration::from_secs(15);

pub struct MailboxLock {
    store: Store,
    account: String,
    owner: String,
    refresher: tokio::task::JoinHandle<()>,
    /// Notified when a refresh finds the lock gone (an operator cleared it).
    lost: Arc<Notify>,
    released: bool,
}

impl MailboxLock {
    /// None when another session holds it; a failed attempt leaves the
    /// holder's lock as it was.
    pub async fn acquire(
        store: &Store,
        account: &str,
        owner: &str,
        peer: IpAddr,
    ) -> crate::store::Result<Option<MailboxLock>> {
        let (a, o) = (account.to_string(), owner.to_string());
        if !store
            .run(move |s| s.locks.try_lock(&a, &o, Some(peer), LOCK_TTL))
            .await?
        {
            return Ok(None);
        }
        let lost = Arc::new(Notify::new());
        let refresher = tokio::spawn(refresh(
            store.clone(),
            account.to_string(),
            owner.to_string(),
            lost.clone(),
        ));
        Ok(Some(MailboxLock {
            store: store.clone(),
            account: account.to_string(),
            owner: owner.to_string(),
            refresher,
            lost,
            released: false,
        }))
    }

    /// Completes when the lock was found taken away.
    pub async fn lost(&self) {
        self.lost.notified().await
    }

    /// Refreshes now; false if the lock is no longer ours (checked before
    /// deletions so a session whose lock was cleared changes nothing).
    pub async fn confirm(&self) -> bool {
        let (a, o) = (self.account.clone(), self.owner.clone());
        matches!(
            self.store
                .run(move |s| s.locks.refresh(&a, &o, LOCK_TTL))
                .await,
            Ok(true)
        )
    }

    pub async fn release(mut self) {
        self.released = true;
        self.refresher.abort();
        let (a, o) = (self.account.clone(), self.owner.clone());
        if let Err(e) = self.store.run(move |s| s.locks.release(&a, &o)).await {
            tracing::warn!(account = %self.account, error = %e, "releasing the lock failed; it lapses by itself");
        }
    }
}

impl Drop for MailboxLock {
    fn drop(&mut self) {
        self.refresher.abort();
        if self.released {
            return;
        }
        let (store, a, o) = (self.store.clone(), self.account.clone(), self.owner.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || store.locks.release(&a, &o));
        }
    }
}

async fn refresh(store: Store, account: String, owner: String, lost: Arc<Notify>) {
    let mut tick = tokio::time::interval(LOCK_REFRESH);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (a, o) = (account.clone(), owner.clone());
        match store.run(move |s| s.locks.refresh(&a, &o, LOCK_TTL)).await {
            Ok(true) => {}
            Ok(false) => {
                lost.notify_one();
                return;
            }
            Err(e) => tracing::warn!(account, error = %e, "refreshing the lock failed"),
        }
    }
}
