//! The services every listener and background task shares, built once from
//! the configuration.

use crate::auth::{failures::FailurePolicy, Authenticator, FailureTracker};
use crate::config::Config;
use crate::dns::Dns;
use crate::net::{FdBudget, MemoryBudget};
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub dns: Dns,
    pub auth: Arc<Authenticator>,
    pub tls: TlsAcceptor,
    /// Identifies this process in lock owners: `<hostname>/<pid>`.
    pub node: String,
    /// Wakes the queue runner when a message was queued (SPEC: outbound
    /// delivery is tried at once after queueing).
    pub queue_wakeup: tokio::sync::Notify,
    /// Line buffers and in-memory DATA of all client connections.
    pub memory: Arc<MemoryBudget>,
    /// Descriptors for client connections and spool files; sized by `serve`
    /// from the open-file limit.
    pub fds: Arc<FdBudget>,
}

impl App {
    /// Opens the store (creating the data dir) without TLS or DNS: enough for
    /// admin subcommands.
    pub fn open_store(config: &Config) -> anyhow::Result<Store> {
        let dir = config.data_dir();
        let store = Store::open_embedded(&dir, &config.hostname)
            .with_context(|| format!("opening the data directory {}", dir.display()))?;
        let limits = &config.limits;
        Ok(store.limit_disk(limits.smtp_min_free_disk, limits.disk_reserve))
    }

    pub fn new(config: Config) -> anyhow::Result<Arc<App>> {
        let dns = Dns::new(&config.dns).context("setting up the DNS resolver")?;
        Self::with_dns(config, dns)
    }

    /// As [`App::new`] with the given DNS (a scripted resolver in tests).
    pub fn with_dns(config: Config, dns: Dns) -> anyhow::Result<Arc<App>> {
        let store = Self::open_store(&config)?
            .bound_calls(config.limits.store_calls, config.limits.store_wait);
        let tls = crate::tls::acceptor(&config)?;
        let failures = FailureTracker::new(FailurePolicy {
            base: config.limits.auth_failure_delay,
            max: config.limits.auth_failure_max_delay,
            ..FailurePolicy::default()
        });
        let auth = Arc::new(Authenticator::new(store.clone(), &config.auth, failures));
        let node = format!("{}/{}", config.hostname, std::process::id());
        Ok(Arc::new(App {
            store,
            dns,
            auth,
            tls,
            node,
            queue_wakeup: tokio::sync::Notify::new(),
            memory: MemoryBudget::new(config.limits.connection_memory_total),
            fds: FdBudget::new(usize::MAX),
            config,
        }))
    }
}
