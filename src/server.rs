//! `betomail serve`: binds every configured listener, runs the protocol
//! servers and the background tasks side by side until SIGINT/SIGTERM.

use crate::app::App;
use crate::config::Protocol;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

pub async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let ready = crate::ready::ReadySignal::from_env()?;
    let limit = match crate::net::raise_nofile_limit() {
        Ok((before, now)) => {
            tracing::info!(before, now, "open-file limit raised to the hard limit");
            now
        }
        Err(e) => anyhow::bail!("reading the open-file limit: {e}"),
    };
    let mut bound = Vec::new();
    for l in &app.config.listeners {
        let tcp = TcpListener::bind(l.bind)
            .await
            .with_context(|| format!("listener `{}`: cannot bind {}", l.name, l.bind))?;
        bound.push((l.clone(), tcp));
    }
    size_fd_budget(&app, limit)?;
    println!(
        "betomail {} serving {} (data in {})",
        env!("CARGO_PKG_VERSION"),
        app.config.hostname,
        app.config.data_dir().display()
    );
    let mut own_smtp = Vec::new();
    let mut bound_addrs = Vec::new();
    for (l, tcp) in bound {
        let addr = tcp.local_addr()?;
        bound_addrs.push((l.name.clone(), addr));
        if l.protocol == Protocol::Smtp {
            own_smtp.push(addr);
        }
        println!(
            "  {:<8} {:<5} {:<22} tls={}",
            l.name,
            format!("{:?}", l.protocol).to_lowercase(),
            addr,
            format!("{:?}", l.tls_mode()).to_lowercase()
        );
        let app = app.clone();
        match l.protocol {
            Protocol::Pop3 => tokio::spawn(crate::pop3::server::run(app, l, tcp)),
            Protocol::Smtp => tokio::spawn(crate::smtp::server::run(app, l, tcp)),
            Protocol::Http => tokio::spawn(crate::web::run(app, l, tcp)),
        };
    }
    println!("add an account: betomail user add NAME   (then read mail with any POP3 client)");
    if let Ok(None) = app.store.run(|s| s.accounts.find("postmaster")).await {
        // RFC 5321 4.5.1: every mail domain must accept mail for postmaster.
        tracing::warn!("no `postmaster` account: mail to postmaster@ is refused until `betomail user add postmaster` is run");
    }
    tokio::spawn(purge_grants(app.clone()));
    tokio::spawn(crate::delivery::outbound::run(app.clone(), own_smtp));
    if let Some(ready) = ready {
        ready.send(&bound_addrs)?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// Gives client connections what the open-file limit leaves, and says at
/// start when that is less than the listeners' `max_connections` promise.
fn size_fd_budget(app: &App, limit: u64) -> anyhow::Result<()> {
    let plan = crate::net::FdPlan::new(&app.config, limit, crate::net::open_now());
    if plan.clients == 0 {
        anyhow::bail!(
            "the open-file limit ({limit}) leaves no descriptor for clients after \
             `limits.reserved_fds` and `outbound.max_connections`: raise the hard limit \
             (ulimit -Hn, systemd LimitNOFILE)"
        );
    }
    app.fds.set_limit(plan.clients);
    if plan.wanted > plan.clients {
        tracing::warn!(
            "the open-file limit ({limit}) holds {} client connections, fewer than the {} \
             that the listeners' `limits.max_connections` allow: past {}, new clients get a \
             \"try again later\" reply. Raise the hard limit (ulimit -Hn, systemd \
             LimitNOFILE) or lower `limits.max_connections`",
            plan.clients,
            plan.wanted,
            plan.clients
        );
    }
    Ok(())
}

/// Expired POP-before-SMTP grants are removed every minute (SEED-9).
async fn purge_grants(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match app.store.run(|s| s.grants.purge(SystemTime::now())).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired relay grants"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging grants failed"),
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
