//! The SMTP listener: the only place that waits on the network. It reads
//! lines, feeds them to the [`Session`], answers what the session asks of
//! the store, and streams DATA into the spool and on into the store.

use super::command;
use super::data::{self, Collector, Trace, MAX_DATA_LINE};
use super::reply::Reply;
use super::session::{Session, Settings, Step, Transaction};
use crate::app::App;
use crate::auth::AuthResult;
use crate::config::{FcrdnsMode, Listener, RelayBy, TlsMode};
use crate::dns::{decide, Decision};
use crate::net::{accept_loop, Conn, Line, Refusals};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::net::TcpListener;
use tracing::Instrument;

struct Ctx {
    app: Arc<App>,
    listener: Listener,
    settings: Settings,
    spool_dir: PathBuf,
}

pub fn settings(app: &App, l: &Listener) -> Settings {
    Settings {
        hostname: app.config.hostname.clone(),
        local_domains: app.config.local_domains.clone(),
        max_message_size: app.config.max_message_size,
        max_recipients: app.config.limits.max_recipients,
        max_bad_commands: app.config.limits.max_bad_commands,
        max_junk_commands: app.config.limits.max_junk_commands,
        unauthenticated_lifetime: app.config.limits.unauthenticated_session_lifetime,
        starttls: l.tls_mode() == TlsMode::Starttls,
        plaintext_auth: l.plaintext_auth,
        relay_by_auth: l.relay_by.contains(&RelayBy::Auth),
        relay_by_grant: l.relay_by.contains(&RelayBy::PopBeforeSmtp),
        require_auth: l.require_auth,
    }
}

pub async fn run(app: Arc<App>, listener: Listener, tcp: TcpListener) {
    let spool_dir = app.config.data_dir().join("spool");
    if let Err(e) = std::fs::create_dir_all(&spool_dir) {
        tracing::error!(listener = %listener.name, error = %e, "cannot create the spool directory");
        return;
    }
    sweep_spool(&spool_dir);
    let ctx = Arc::new(Ctx {
        settings: settings(&app, &listener),
        app: app.clone(),
        listener,
        spool_dir,
    });
    static SESSIONS: AtomicU64 = AtomicU64::new(1);
    let limits = app.config.limits.clone();
    // RFC 5321 3.8: 421 and close when the service cannot take the client.
    let refusals = Refusals {
        per_client: b"421 4.7.0 Too many connections from your address\r\n",
        busy: b"421 4.3.2 Too many connections, try again later\r\n",
    };
    accept_loop(
        tcp,
        &limits,
        app.fds.clone(),
        refusals,
        move |stream, peer| {
            let ctx = ctx.clone();
            let id = SESSIONS.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("smtp", listener = %ctx.listener.name, %peer, id);
            async move {
                let mut conn = Conn::new(stream, peer, ctx.app.memory.clone());
                if let Err(e) = serve(&ctx, &mut conn).await {
                    tracing::debug!(error = %e, "connection ended");
                }
                conn.shutdown().await;
            }
            .instrument(span)
        },
    )
    .await;
}

/// Spool files never outlive their connection; a name left in the spool
/// directory (a crash where the file system lacks O_TMPFILE, between create
/// and unlink) belongs to no message. Removing the name of a file another
/// listener has open is harmless: its spool files are meant to be nameless.
fn sweep_spool(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let removed = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count();
    if removed > 0 {
        tracing::info!(removed, "removed stale spool files");
    }
}

/// Wraps every wait on the client in the idle timeout (RFC 5321 4.5.3.2.7).
async fn timed<T>(ctx: &Ctx, f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(ctx.app.config.limits.smtp_idle_timeout, f)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")))
}

async fn send(ctx: &Ctx, conn: &mut Conn, r: &Reply) -> io::Result<()> {
    timed(ctx, conn.write_all(r.to_wire().as_bytes())).await
}

async fn serve(ctx: &Ctx, conn: &mut Conn) -> io::Result<()> {
    let implicit = ctx.listener.tls_mode() == TlsMode::Implicit;
    if implicit {
        timed(ctx, conn.start_tls(&ctx.app.tls)).await?;
    }
    let ip = conn.peer.ip().to_canonical();
    if let Some(refusal) = fcrdns(ctx, ip).await {
        return send(ctx, conn, &refusal).await;
    }
    let mut session = Session::new(ctx.settings.clone(), ip, implicit);
    send(ctx, conn, &session.greeting()).await?;
    loop {
        // RFC 2920 3.2: replies to a pipelined group go out together.
        if !conn.has_buffered_input() {
            timed(ctx, conn.flush()).await?;
        }
        // The wait for a command ends at the idle timeout or, before AUTH,
        // at the end of the session's lifetime, whichever comes first.
        let idle = ctx.app.config.limits.smtp_idle_timeout;
        let (wait, ends_life) = match session.lifetime_left(Instant::now()) {
            Some(left) if left < idle => (left, true),
            _ => (idle, false),
        };
        if ends_life && wait.is_zero() {
            return send(ctx, conn, &session.lifetime_over()).await;
        }
        let max_line = ctx.app.config.limits.max_line_length;
        let line = match tokio::time::timeout(wait, conn.read_line(max_line)).await {
            Err(_) if ends_life => return send(ctx, conn, &session.lifetime_over()).await,
            Err(_) => return send(ctx, conn, &timeout_reply(ctx)).await,
            Ok(line) => line?,
        };
        let mut step = match line {
            Line::Eof => return Ok(()),
            Line::NoMemory => return send(ctx, conn, &no_memory_reply()).await,
            Line::TooLong => session.too_long(),
            Line::Complete { bytes, .. } if session.in_auth() => session.auth_line(&bytes),
            Line::Complete { bytes, .. } => session.handle(command::parse(&bytes)),
        };
        loop {
            step = match step {
                Step::Reply(r) => {
                    timed(ctx, conn.write_buffered(r.to_wire().as_bytes())).await?;
                    break;
                }
                Step::Close(r) => return send(ctx, conn, &r).await,
                Step::StartTls(r) => {
                    send(ctx, conn, &r).await?;
                    timed(ctx, conn.start_tls(&ctx.app.tls)).await?;
                    session.tls_started();
                    break;
                }
                Step::Verify { login, credential } => {
                    let shown = super::reply::echo(login.as_bytes());
                    let result = ctx
                        .app
                        .auth
                        .login(ip, login, credential, crate::auth::Purpose::Smtp)
                        .await;
                    match &result {
                        AuthResult::Ok(a) => tracing::info!(user = %a.name, "authenticated"),
                        AuthResult::Failed => {
                            tracing::info!(login = %shown, "authentication failed")
                        }
                        AuthResult::TempFail(e) => {
                            tracing::warn!(error = %e, "authentication unavailable")
                        }
                    }
                    session.auth_done(result)
                }
                Step::Lookup { address } => session.lookup_done(lookup(ctx, address).await),
                Step::CheckGrant => {
                    // A grant relays only while its account may still log in:
                    // disabling or deleting an abused account ends its relay.
                    let r = ctx
                        .app
                        .store
                        .run(move |s| match s.grants.active(ip, SystemTime::now())? {
                            Some(g) => {
                                Ok(s.accounts.find(&g.account)?.is_some_and(|a| !a.disabled))
                            }
                            None => Ok(false),
                        })
                        .await;
                    session.grant_checked(
                        r.map_err(|e| tracing::warn!(error = %e, "grant lookup failed")),
                    )
                }
                Step::Data { reply, tx } => {
                    send(ctx, conn, &reply).await?;
                    receive(ctx, conn, &session, tx).await?
                }
            }
        }
    }
}

/// SEED-8 on SMTP listeners that ask for it (off by default).
async fn fcrdns(ctx: &Ctx, ip: std::net::IpAddr) -> Option<Reply> {
    let mode = ctx.listener.fcrdns_mode();
    if mode == FcrdnsMode::Off {
        return None;
    }
    let report = ctx.app.dns.fcrdns(ip).await;
    match decide(&report, mode, ctx.listener.on_dns_error) {
        Decision::Allow => None,
        Decision::Refuse => Some(Reply::new(
            554,
            format!(
                "5.7.1 Refused: {}. See {}",
                report.reason(),
                ctx.app.config.dns_check_url()
            ),
        )),
        Decision::TempFail => Some(Reply::new(
            421,
            "4.4.3 DNS lookup of your address failed, try again later",
        )),
    }
}

/// A local recipient's account: by full address, else by login name (all
/// local domains share one name space, as Postfix's mydestination does).
async fn lookup(ctx: &Ctx, address: String) -> Result<Option<crate::store::Account>, ()> {
    ctx.app
        .store
        .run(move |s| {
            if let Some(a) = s.accounts.find(&address)? {
                return Ok(Some(a));
            }
            let local = address
                .rsplit_once('@')
                .map_or(address.as_str(), |(l, _)| l);
            Ok(s.accounts
                .find(local)?
                .filter(|a| a.name.eq_ignore_ascii_case(local)))
        })
        .await
        .map_err(|e| tracing::warn!(error = %e, "recipient lookup failed"))
}

/// Reads the message after 354 and stores it; the reply after the dot.
async fn receive(
    ctx: &Ctx,
    conn: &mut Conn,
    session: &Session,
    tx: Transaction,
) -> io::Result<Step> {
    let cfg = &ctx.app.config;
    let mut c = Collector::new(
        &ctx.spool_dir,
        cfg.max_message_size,
        ctx.app.memory.clone(),
        ctx.app.fds.clone(),
    );
    loop {
        let line =
            tokio::time::timeout(cfg.limits.smtp_idle_timeout, conn.read_line(MAX_DATA_LINE)).await;
        match line {
            Err(_) => return Ok(Step::Close(timeout_reply(ctx))),
            // A client that goes away mid-message gets nothing acknowledged.
            Ok(line) => match line? {
                Line::Eof => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in DATA"))
                }
                Line::NoMemory => return Ok(Step::Close(no_memory_reply())),
                Line::TooLong => c.line_too_long(),
                Line::Complete { bytes, bare_lf } => {
                    if c.is_end(&bytes, bare_lf) {
                        break;
                    }
                    c.line(&bytes, bare_lf);
                    if let Some(w) = c.pending_write() {
                        let r = tokio::task::spawn_blocking(move || w.run())
                            .await
                            .unwrap_or_else(|e| Err(io::Error::other(e)));
                        c.written(r);
                    }
                }
            },
        }
    }
    let ambiguous = c.end_is_ambiguous();
    let (mut spool, size) = match c.finish(cfg.limits.max_received_headers) {
        Ok(s) => s,
        Err(r) if ambiguous => {
            tracing::info!(reply = %r.summary(), "message refused; closing after an overlong line");
            return Ok(Step::Close(r));
        }
        Err(r) => {
            tracing::info!(reply = %r.summary(), "message refused");
            return Ok(Step::Reply(r));
        }
    };
    let received = data::received_header(
        &Trace {
            helo: session.helo().unwrap_or(""),
            peer: conn.peer.ip(),
            hostname: &cfg.hostname,
            protocol: session.protocol(),
            tls: conn.tls_info(),
            user: session.user(),
            recipient: (tx.accepted.len() == 1).then(|| tx.accepted[0].as_str()),
        },
        chrono::Utc::now(),
    );
    let (from, local, remote) = (tx.sender.clone(), tx.local.len(), tx.remote.len());
    let spooled = if spool.in_file() { "file" } else { "memory" };
    let max = cfg.max_message_size;
    let result = ctx
        .app
        .store
        .run(move |s| data::store_message(s, &tx, &received, &mut spool, max))
        .await;
    let reply = data::outcome_reply(&result);
    match &result {
        Ok(queued) => {
            tracing::info!(%from, local, remote, size, queued = queued.as_deref().unwrap_or("-"), spooled, "message accepted");
            if queued.is_some() {
                ctx.app.queue_wakeup.notify_one();
            }
        }
        Err(e) => tracing::warn!(error = %e, reply = %reply.summary(), "message not stored"),
    }
    Ok(Step::Reply(reply))
}

/// RFC 5321 3.8: 421 and close when the service cannot go on; RFC 3463
/// 4.3.2: the system is not accepting messages for now. The client retries
/// the whole transaction later.
fn no_memory_reply() -> Reply {
    tracing::warn!("connection memory budget spent; closing the connection");
    Reply::new(421, "4.3.2 Server busy, try again later")
}

fn timeout_reply(ctx: &Ctx) -> Reply {
    Reply::new(
        421,
        format!("4.4.2 {} Error: timeout exceeded", ctx.settings.hostname),
    )
}
