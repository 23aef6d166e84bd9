//! The POP3 network loop: accepts connections, checks FCrDNS (SEED-8),
//! speaks TLS (implicit or STLS), feeds lines to the sans-IO [`Session`]
//! and performs its effects: login with the mailbox lock (SEED-6), relay
//! grants (SEED-9), streaming RETR/TOP, and the UPDATE-state deletions.

use super::dotstuff::Stuffer;
use super::lock::MailboxLock;
use super::session::{self, Effect, LoginResult, Output, Session, SessionConfig};
use crate::app::App;
use crate::auth::{AuthResult, Credential, Purpose};
use crate::config::{Listener, TlsMode};
use crate::dns::{self, Decision};
use crate::net::{self, Conn, Line};
use crate::store::{Account, MessageInfo};
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

/// Read size while streaming a message.
const CHUNK: usize = 256 * 1024;

/// RFC 2449 8.1.2: SYS/TEMP for a condition that may pass.
const REFUSALS: net::Refusals = net::Refusals {
    per_client: b"-ERR [SYS/TEMP] Too many connections from your address\r\n",
    busy: b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
};

/// The shared memory budget cannot hold the client's line (RFC 2449 8.1.2).
const NO_MEMORY: &[u8] = b"-ERR [SYS/TEMP] Server busy, try again later\r\n";

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub async fn run(app: Arc<App>, listener: Listener, tcp: TcpListener) {
    let listener = Arc::new(listener);
    let limits = app.config.limits.clone();
    let proxy = net::ProxyPolicy::of(&listener, &limits);
    net::accept_loop(
        tcp,
        &limits,
        app.fds.clone(),
        REFUSALS,
        proxy,
        move |stream, peer| {
            let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("pop3", listener = %listener.name, %peer, session = id);
            handle(app.clone(), listener.clone(), stream, peer, id).instrument(span)
        },
    )
    .await;
}

/// A session's state that the server keeps beside the [`Session`].
struct Ctx {
    app: Arc<App>,
    listener: Arc<Listener>,
    ip: IpAddr,
    owner: String,
    mailbox: Option<(Account, MailboxLock)>,
}

async fn handle(app: Arc<App>, listener: Arc<Listener>, tcp: TcpStream, peer: SocketAddr, id: u64) {
    let mut conn = Conn::new(tcp, peer, app.memory.clone());
    let idle = app.config.limits.pop3_idle_timeout;
    let ip = peer.ip().to_canonical();
    // Futures of one-off steps are boxed so that they do not size every
    // idle session's task.
    let refusal = Box::pin(fcrdns_refusal(&app, &listener, ip)).await;
    if listener.tls_mode() == TlsMode::Implicit {
        match tokio::time::timeout(idle, Box::pin(conn.start_tls(&app.tls))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!("TLS handshake timed out"),
        }
    }
    if let Some(text) = refusal {
        let _ = timed(idle, conn.write_all(text.as_bytes())).await;
        close(&mut conn).await;
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let cfg = SessionConfig {
        timestamp: format!("<{}.{nanos}@{}>", std::process::id(), app.config.hostname),
        stls: listener.tls_mode() == TlsMode::Starttls,
        plaintext_auth: listener.plaintext_auth,
        max_bad_commands: app.config.limits.max_bad_commands,
        max_junk_commands: app.config.limits.max_junk_commands,
        unauthenticated_lifetime: app.config.limits.unauthenticated_session_lifetime,
    };
    let mut session = Session::new(cfg, conn.is_tls());
    let mut ctx = Ctx {
        owner: format!("{}/{id}", app.node),
        app,
        listener,
        ip,
        mailbox: None,
    };
    tracing::debug!("connected");
    if timed(idle, conn.write_all(&session.greeting()))
        .await
        .is_ok()
    {
        serve(&mut ctx, &mut conn, &mut session, idle).await;
    }
    // Ends the lock the moment the session ends, whichever way (SEED-6);
    // were this task dropped instead, the lock's own Drop releases it.
    if let Some((_, lock)) = ctx.mailbox.take() {
        lock.release().await;
    }
    close(&mut conn).await;
    tracing::debug!("closed");
}

/// TLS close_notify to a client that stopped reading must not hang.
async fn close(conn: &mut Conn) {
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.shutdown()).await;
}

/// The command loop; returns when the session is over.
async fn serve(ctx: &mut Ctx, conn: &mut Conn, session: &mut Session, idle: Duration) {
    let max_line = ctx.app.config.limits.max_line_length;
    loop {
        let lost = async {
            match &ctx.mailbox {
                Some((_, lock)) => lock.lost().await,
                None => std::future::pending().await,
            }
        };
        // The wait ends at the idle timeout or, before login, at the end
        // of the session's lifetime, whichever comes first.
        let (wait, ends_life) = match session.lifetime_left(Instant::now()) {
            Some(left) if left < idle => (left, true),
            _ => (idle, false),
        };
        if ends_life && wait.is_zero() {
            tracing::info!("unauthenticated session lifetime exceeded");
            let _ = timed(idle, conn.write_all(session::LIFETIME_OVER)).await;
            return;
        }
        let line = tokio::select! {
            r = tokio::time::timeout(wait, conn.read_line(max_line)) => r,
            _ = lost => {
                tracing::warn!("mailbox lock lost");
                let _ = timed(idle, conn.write_all(session::LOCK_LOST)).await;
                return;
            }
        };
        let mut out = match line {
            Err(_) if ends_life => {
                tracing::info!("unauthenticated session lifetime exceeded");
                let _ = timed(idle, conn.write_all(session::LIFETIME_OVER)).await;
                return;
            }
            Err(_) => {
                tracing::info!("idle timeout");
                let _ = timed(idle, conn.write_all(session::IDLE_TIMEOUT)).await;
                return;
            }
            Ok(Err(e)) => return tracing::debug!(error = %e, "read failed"),
            Ok(Ok(Line::Eof)) => return tracing::debug!("client disconnected"),
            Ok(Ok(Line::NoMemory)) => {
                tracing::warn!("connection memory budget spent; closing the connection");
                let _ = timed(idle, conn.write_all(NO_MEMORY)).await;
                return;
            }
            Ok(Ok(Line::TooLong)) => session.line_too_long(),
            Ok(Ok(Line::Complete { bytes, .. })) => session.input(&bytes),
        };
        loop {
            if timed(idle, conn.write_buffered(&out.text)).await.is_err() {
                return;
            }
            let Some(effect) = out.effect.take() else {
                break;
            };
            out = match Box::pin(perform(ctx, conn, session, effect, idle)).await {
                Some(o) => o,
                None => {
                    let _ = timed(idle, conn.flush()).await;
                    return;
                }
            };
        }
        // RFC 2449 6.6 PIPELINING: answer a batch with one write.
        if !conn.has_buffered_input() && timed(idle, conn.flush()).await.is_err() {
            return;
        }
    }
}

/// Writes are bounded by the idle timeout too: a client that stops reading
/// cannot keep its session, and its mailbox lock, forever.
async fn timed<T>(idle: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(idle, f)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Does one effect; None ends the session.
async fn perform(
    ctx: &mut Ctx,
    conn: &mut Conn,
    session: &mut Session,
    effect: Effect,
    idle: Duration,
) -> Option<Output> {
    match effect {
        Effect::Close => None,
        Effect::StartTls => {
            timed(idle, conn.flush()).await.ok()?;
            match tokio::time::timeout(idle, conn.start_tls(&ctx.app.tls)).await {
                Ok(Ok(())) => {
                    session.tls_done();
                    Some(Output::default())
                }
                _ => {
                    tracing::debug!("STLS handshake failed");
                    None
                }
            }
        }
        Effect::Login { login, credential } => {
            let result = login_step(ctx, login, credential).await;
            Some(session.login_done(result))
        }
        Effect::Send { msg, top, ok } => {
            let (account, _) = ctx.mailbox.as_ref()?;
            match send(ctx, account.clone(), msg, top, &ok, conn, idle).await {
                Ok(true) => Some(Output::default()),
                Ok(false) => {
                    timed(idle, conn.write_buffered(session::SEND_FAILED))
                        .await
                        .ok()?;
                    Some(Output::default())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sending a message failed");
                    None
                }
            }
        }
        Effect::Commit(msgs) => {
            let (account, lock) = ctx.mailbox.take()?;
            // Deleting needs the lock still ours; signing off without
            // deletions does not (and skips a store write).
            if !msgs.is_empty() && !lock.confirm().await {
                tracing::warn!(account = %account.name, "mailbox lock lost before UPDATE");
                let _ = timed(idle, conn.write_buffered(session::LOCK_LOST)).await;
                return None;
            }
            let n = msgs.len();
            let result = if n == 0 {
                Ok(0)
            } else {
                let a = account.clone();
                match ctx.app.store.run(move |s| s.mail.delete(&a, &msgs)).await {
                    Ok(()) => Ok(n),
                    Err(e) => {
                        tracing::error!(account = %account.name, error = %e, "deleting failed");
                        Err(())
                    }
                }
            };
            let deleted = result.unwrap_or(0);
            tracing::info!(account = %account.name, deleted, "logout");
            // Released before the reply, so the client's next login finds it free.
            lock.release().await;
            Some(session.commit_done(result))
        }
    }
}

/// SEED-8 at connect: the text to send instead of the greeting, if any.
async fn fcrdns_refusal(app: &App, listener: &Listener, ip: IpAddr) -> Option<String> {
    let mode = listener.fcrdns_mode();
    if mode == crate::config::FcrdnsMode::Off {
        return None;
    }
    let report = app.dns.fcrdns(ip).await;
    let url = app.config.dns_check_url();
    match dns::decide(&report, mode, listener.on_dns_error) {
        Decision::Allow => {
            if report.verdict == dns::Verdict::Temperror {
                tracing::warn!(reason = %report.reason(), "FCrDNS lookup failed; client let in");
            }
            None
        }
        Decision::Refuse => {
            tracing::info!(reason = %report.reason(), "refused by FCrDNS");
            Some(format!(
                "-ERR [SYS/PERM] Connection refused: {}. Check your host at {url}\r\n",
                report.reason()
            ))
        }
        Decision::TempFail => {
            tracing::info!(reason = %report.reason(), "FCrDNS tempfail");
            Some(format!(
                "-ERR [SYS/TEMP] Connection refused for now: {}; try again later. See {url}\r\n",
                report.reason()
            ))
        }
    }
}

/// Verifies, locks (SEED-6), lists the snapshot and grants relay (SEED-9).
async fn login_step(ctx: &mut Ctx, login: String, credential: Credential) -> LoginResult {
    let app = ctx.app.clone();
    let user = session::shown_name(&login);
    let account = match app
        .auth
        .login(ctx.ip, login, credential, Purpose::Pop3)
        .await
    {
        AuthResult::Ok(a) => a,
        AuthResult::Failed => {
            tracing::info!(user, "login failed");
            return LoginResult::Failed;
        }
        AuthResult::TempFail(e) => {
            tracing::warn!(error = %e, "login check failed");
            return LoginResult::TempFail;
        }
    };
    let lock = match MailboxLock::acquire(&app.store, &account.name, &ctx.owner, ctx.ip).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(account = %account.name, "mailbox busy");
            return LoginResult::Busy;
        }
        Err(e) => {
            tracing::warn!(error = %e, "locking failed");
            return LoginResult::TempFail;
        }
    };
    let a = account.clone();
    let msgs = match app.store.run(move |s| s.mail.list(&a)).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(account = %account.name, error = %e, "listing failed");
            lock.release().await;
            return LoginResult::TempFail;
        }
    };
    if ctx.listener.grants_relay {
        let (ip, name) = (ctx.ip, account.name.clone());
        let until =
            SystemTime::now() + Duration::from_secs(app.config.relay.pop_before_smtp_seconds);
        if let Err(e) = app
            .store
            .run(move |s| s.grants.grant(ip, &name, until))
            .await
        {
            tracing::warn!(error = %e, "recording the relay grant failed");
        }
    }
    tracing::info!(account = %account.name, messages = msgs.len(), "logged in");
    ctx.mailbox = Some((account, lock));
    LoginResult::Ok(msgs)
}

/// RETR/TOP: opens the message (false if it cannot be read), writes `ok`
/// and streams it dot-stuffed. The first chunk is read with the open; a
/// larger message gets a reader thread that stays a chunk ahead.
async fn send(
    ctx: &Ctx,
    account: Account,
    msg: MessageInfo,
    top: Option<u32>,
    ok: &str,
    conn: &mut Conn,
    idle: Duration,
) -> io::Result<bool> {
    let uid = msg.uid.clone();
    // The size is known: no need to zero a whole chunk for a small message.
    let first_len = (msg.size as usize).saturating_add(1).min(CHUNK);
    let opened = ctx
        .app
        .store
        .run(move |s| {
            let mut reader = s.mail.open(&account, &msg)?;
            let first = read_chunk(&mut reader, first_len)?;
            Ok((reader, first))
        })
        .await;
    let (reader, first) = match opened {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(uid, error = %e, "opening a message failed");
            return Ok(false);
        }
    };
    let mut out = Vec::with_capacity(first.len() + first.len() / 32 + ok.len() + 8);
    out.extend_from_slice(ok.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut stuffer = Stuffer::new(top);
    let more = first.len() == first_len;
    if !stuffer.feed(&first, &mut out) && more {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(2);
        tokio::task::spawn_blocking(move || read_chunks(reader, tx));
        loop {
            timed(idle, conn.write_buffered(&out)).await?;
            out.clear();
            let Some(chunk) = rx.recv().await else { break };
            if stuffer.feed(&chunk?, &mut out) {
                break;
            }
        }
    }
    stuffer.finish(&mut out);
    timed(idle, conn.write_buffered(&out)).await?;
    Ok(true)
}

/// Up to `len` octets; fewer only at the end of the message.
fn read_chunk(reader: &mut dyn Read, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_chunks(
    mut reader: Box<dyn Read + Send>,
    tx: tokio::sync::mpsc::Sender<io::Result<Vec<u8>>>,
) {
    loop {
        let r = read_chunk(&mut reader, CHUNK);
        let stop = !matches!(&r, Ok(b) if b.len() == CHUNK);
        // The receiver is gone when TOP has enough or the client left.
        if matches!(&r, Ok(b) if b.is_empty()) || tx.blocking_send(r).is_err() || stop {
            return;
        }
    }
}

/// SEED-8 at connect, in-process on a scripted resolver (the end-to-end
/// twins with dnsmasq are in tests/pop3_fcrdns.rs).
#[cfg(test)]
mod fcrdns_tests {
    use super::*;
    use crate::config::Config;
    use crate::dns::scripted::ScriptedResolver;
    use crate::dns::Dns;

    const LISTENERS: &str = r#"
portal_url = "http://portal.be.test:8080"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
[[listener]]
name = "tempfail"
protocol = "pop3"
bind = "127.0.0.1:0"
on_dns_error = "tempfail"
[[listener]]
name = "strict"
protocol = "pop3"
bind = "127.0.0.1:0"
fcrdns = "require-ptr"
"#;

    /// An app whose DNS knows a mismatched host (.3), a host without
    /// forward records (.4) and one whose lookup fails (.9).
    fn app(dir: &tempfile::TempDir) -> Arc<App> {
        let config = Config::parse(&format!("data_dir = {:?}\n{LISTENERS}", dir.path())).unwrap();
        let resolver = ScriptedResolver::default()
            .with_ptr("127.0.0.3", &["bad.test"])
            .with_host("bad.test", &["127.0.0.99"])
            .with_ptr("127.0.0.4", &["noa.test"])
            .failing_ptr("127.0.0.9");
        let dns = Dns::with_resolver(Box::new(resolver), &config.dns);
        App::with_dns(config, dns).unwrap()
    }

    async fn greeting(app: &App, listener: &str, ip: &str) -> Option<String> {
        let listener = app.config.listener(listener).unwrap();
        fcrdns_refusal(app, listener, ip.parse().unwrap()).await
    }

    #[tokio::test]
    async fn refusals_name_the_host_and_the_check_page() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&dir);
        let g = greeting(&app, "pop", "127.0.0.3").await.unwrap();
        assert!(g.starts_with("-ERR [SYS/PERM] "), "{g}");
        assert!(g.contains("127.0.0.3") && g.contains("bad.test"), "{g}");
        assert!(g.contains("do not match"), "{g}");
        assert!(g.contains("http://portal.be.test:8080/dns-check"), "{g}");
        let g = greeting(&app, "pop", "127.0.0.4").await.unwrap();
        assert!(
            g.starts_with("-ERR [SYS/PERM] ") && g.contains("no forward"),
            "{g}"
        );
        // No PTR and a failed lookup let the client in by default.
        assert_eq!(greeting(&app, "pop", "127.0.0.5").await, None);
        assert_eq!(greeting(&app, "pop", "127.0.0.9").await, None);
    }

    #[tokio::test]
    async fn tempfail_option_and_require_ptr() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&dir);
        let g = greeting(&app, "tempfail", "127.0.0.9").await.unwrap();
        assert!(
            g.starts_with("-ERR [SYS/TEMP] ") && g.contains("127.0.0.9"),
            "{g}"
        );
        let g = greeting(&app, "strict", "127.0.0.5").await.unwrap();
        assert!(
            g.starts_with("-ERR [SYS/PERM] ") && g.contains("127.0.0.5"),
            "{g}"
        );
    }
}
