//! POP3 load: sessions of login, STAT, RETR all, DELE all, QUIT (by
//! default RSET before QUIT, so every session finds the same mailbox), or
//! `--idle N` connections held open to measure the server's memory, or
//! `--first-login`: every session a different account, each paying the
//! server's full password hash (an ISP's morning after a restart).
//! With `--server-pid` every run reports the server's RSS before, its peak
//! (VmHWM) and after.

use crate::stats;
use anyhow::{bail, Context};
use memchr::memmem;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args, Clone)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1110)]
    port: u16,
    /// Accounts `<prefix>S` .. `<prefix>S+N-1` (S = --user-start); worker
    /// i uses the i-th mod N.
    #[arg(long, default_value_t = 1)]
    users: usize,
    /// Index of the first account, so that runs against one server can use
    /// accounts that have not logged in yet.
    #[arg(long, default_value_t = 0)]
    user_start: usize,
    /// Each session logs in to the next account not used yet, until all
    /// --users are used or --duration ends; no warm-up logins.
    #[arg(long)]
    first_login: bool,
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    #[arg(long, default_value = "benchpw")]
    password: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// First create the accounts and deliver this many messages to each,
    /// with `betomail --config CONFIG` (needs --config).
    #[arg(long)]
    prepare_messages: Option<usize>,
    /// Size of each prepared message in octets.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    #[arg(long)]
    config: Option<PathBuf>,
    /// The betomail binary used for --prepare-messages.
    #[arg(long, default_value = "betomail")]
    betomail: PathBuf,
    /// QUIT after DELE (really deletes: later sessions find less mail).
    #[arg(long)]
    commit: bool,
    /// Instead of sessions: hold this many idle connections for --duration
    /// and print the RSS of --server-pid.
    #[arg(long)]
    idle: Option<usize>,
    #[arg(long)]
    server_pid: Option<u32>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if let Some(n) = a.prepare_messages {
        prepare(&a, n)?;
    }
    match a.idle {
        Some(n) => idle(&a, n).await,
        None => sessions(a).await,
    }
}

fn betomail(a: &Args, args: &[&str], stdin: &[u8]) -> anyhow::Result<bool> {
    let config = a
        .config
        .as_ref()
        .context("--prepare-messages needs --config")?;
    let mut child = Command::new(&a.betomail)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", a.betomail.display()))?;
    // A refused message closes stdin early; the exit status tells.
    let _ = std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, stdin);
    drop(child.stdin.take());
    Ok(child.wait()?.success())
}

/// A message of about `size` octets: headers and 76-column text lines.
fn message(size: usize, n: usize) -> Vec<u8> {
    let mut m = format!("From: bench@be.test\nSubject: bench {n}\n\n").into_bytes();
    let line = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJK\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}

fn prepare(a: &Args, n: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    // Four at a time: each `user add` pays one full password hash.
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let u = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if u >= a.users {
                            return Ok(());
                        }
                        let name = account(a, u);
                        // Fails harmlessly when the account exists.
                        betomail(
                            a,
                            &["user", "add", &name, "--password-stdin"],
                            a.password.as_bytes(),
                        )?;
                        for i in 0..n {
                            if !betomail(a, &["deliver", "--to", &name], &message(a.size, i))? {
                                bail!("deliver to {name} failed");
                            }
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("prepare thread"))
    })?;
    println!(
        "prepared {} accounts x {n} messages of {} octets in {:.1}s",
        a.users,
        a.size,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The login name of the `u`-th account of the run.
fn account(a: &Args, u: usize) -> String {
    format!("{}{}", a.user_prefix, a.user_start + u)
}

type Conn = BufReader<TcpStream>;

async fn line(c: &mut Conn) -> anyhow::Result<String> {
    let mut s = String::new();
    if c.read_line(&mut s).await? == 0 {
        bail!("connection closed");
    }
    Ok(s)
}

async fn cmd(c: &mut Conn, command: &str) -> anyhow::Result<String> {
    c.get_mut()
        .write_all(format!("{command}\r\n").as_bytes())
        .await?;
    let r = line(c).await?;
    if !r.starts_with("+OK") {
        bail!("{command}: {}", r.trim_end());
    }
    Ok(r)
}

/// Reads a multi-line body up to "CRLF.CRLF"; returns its octets.
async fn multiline(c: &mut (impl AsyncBufRead + Unpin)) -> anyhow::Result<u64> {
    const END: &[u8] = b"\r\n.\r\n";
    let mut tail: Vec<u8> = b"\r\n".to_vec();
    let mut total = 0u64;
    loop {
        let buf = c.fill_buf().await?;
        if buf.is_empty() {
            bail!("connection closed in a multi-line reply");
        }
        // The terminator may straddle the previous read.
        let mut joined = tail.clone();
        joined.extend_from_slice(&buf[..buf.len().min(4)]);
        let end = memmem::find(&joined, END)
            .map(|p| p + END.len() - tail.len())
            .or_else(|| memmem::find(buf, END).map(|p| p + END.len()));
        if let Some(n) = end {
            c.consume(n);
            return Ok(total + n as u64);
        }
        let n = buf.len();
        tail = buf[n.saturating_sub(4)..].to_vec();
        total += n as u64;
        c.consume(n);
    }
}

#[derive(Default)]
struct Totals {
    sessions: AtomicU64,
    retr_bytes: AtomicU64,
    retr_nanos: AtomicU64,
    errors: AtomicU64,
}

/// Latencies of one session: connect-to-greeting, login (USER+PASS),
/// logout (RSET/QUIT).
struct Timings {
    greeting: Duration,
    login: Duration,
    logout: Duration,
}

async fn session(a: &Args, user: &str, t: &Totals) -> anyhow::Result<Timings> {
    let start = Instant::now();
    let tcp = TcpStream::connect((a.host.as_str(), a.port)).await?;
    tcp.set_nodelay(true)?;
    let mut c = BufReader::with_capacity(256 * 1024, tcp);
    let greeting = line(&mut c).await?;
    let to_greeting = start.elapsed();
    if !greeting.starts_with("+OK") {
        bail!("greeting: {}", greeting.trim_end());
    }
    let login = Instant::now();
    cmd(&mut c, &format!("USER {user}")).await?;
    cmd(&mut c, &format!("PASS {}", a.password)).await?;
    let login = login.elapsed();
    let stat = cmd(&mut c, "STAT").await?;
    let count: u32 = stat.split(' ').nth(1).unwrap_or("0").parse()?;
    for i in 1..=count {
        let r = Instant::now();
        cmd(&mut c, &format!("RETR {i}")).await?;
        let n = multiline(&mut c).await?;
        t.retr_nanos
            .fetch_add(r.elapsed().as_nanos() as u64, Ordering::Relaxed);
        t.retr_bytes.fetch_add(n, Ordering::Relaxed);
        cmd(&mut c, &format!("DELE {i}")).await?;
    }
    let logout = Instant::now();
    if !a.commit {
        cmd(&mut c, "RSET").await?;
    }
    cmd(&mut c, "QUIT").await?;
    t.sessions.fetch_add(1, Ordering::Relaxed);
    Ok(Timings {
        greeting: to_greeting,
        login,
        logout: logout.elapsed(),
    })
}

async fn sessions(a: Args) -> anyhow::Result<()> {
    let a = Arc::new(a);
    let rss_before = a.server_pid.and_then(|p| proc_kb(p, "VmRSS"));
    // One untimed login per account first: the server's first check of a
    // password is a deliberate argon2 cost, not the steady state.
    let warmup = Totals::default();
    let warm = if a.first_login {
        0
    } else {
        a.users.min(a.concurrency)
    };
    for u in 0..warm {
        let user = account(&a, u);
        session(
            &Args {
                commit: false,
                ..(*a).clone()
            },
            &user,
            &warmup,
        )
        .await?;
    }
    let totals = Arc::new(Totals::default());
    let deadline = Instant::now() + a.duration;
    let start = Instant::now();
    let unused = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (a, t, unused) = (a.clone(), totals.clone(), unused.clone());
        let mine = account(&a, w % a.users.max(1));
        workers.push(tokio::spawn(async move {
            let mut greet = Vec::new();
            while Instant::now() < deadline {
                let user = if a.first_login {
                    match unused.fetch_add(1, Ordering::Relaxed) as usize {
                        u if u < a.users => account(&a, u),
                        _ => break,
                    }
                } else {
                    mine.clone()
                };
                match session(&a, &user, &t).await {
                    Ok(d) => greet.push(d),
                    Err(e) => {
                        if t.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("session error: {e:#}");
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            greet
        }));
    }
    let mut timings = Vec::new();
    for w in workers {
        timings.extend(w.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    let n = totals.sessions.load(Ordering::Relaxed);
    let bytes = totals.retr_bytes.load(Ordering::Relaxed) as f64;
    let retr_secs = totals.retr_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    println!(
        "concurrency={} users={} first_login={} duration={secs:.1}s sessions={n} errors={}",
        a.concurrency,
        a.users,
        a.first_login,
        totals.errors.load(Ordering::Relaxed)
    );
    println!("sessions/s: {:.1}", n as f64 / secs);
    println!(
        "RETR: {:.1} MB total, {:.1} MB/s aggregate, {:.1} MB/s per stream (time inside RETR)",
        bytes / 1e6,
        bytes / 1e6 / secs,
        if retr_secs > 0.0 {
            bytes / 1e6 / retr_secs
        } else {
            0.0
        }
    );
    let pick = |f: fn(&Timings) -> Duration| timings.iter().map(f).collect::<Vec<_>>();
    stats::report("connect-to-greeting", &mut pick(|t| t.greeting));
    stats::report("login (USER+PASS)", &mut pick(|t| t.login));
    stats::report("logout (RSET+QUIT)", &mut pick(|t| t.logout));
    if let Some(pid) = a.server_pid {
        let kb = |v: Option<u64>| v.map_or("?".into(), |v| format!("{v} kB"));
        println!(
            "server RSS: {} before, {} peak (VmHWM, since the server started), {} after",
            kb(rss_before),
            kb(proc_kb(pid, "VmHWM")),
            kb(proc_kb(pid, "VmRSS")),
        );
    }
    Ok(())
}

/// A memory figure of /proc/PID/status (Linux): `VmRSS`, `VmHWM`, in kB.
fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn idle(a: &Args, n: usize) -> anyhow::Result<()> {
    raise_nofile(n as u64 + 100);
    let before = a.server_pid.and_then(|p| proc_kb(p, "VmRSS"));
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut greet = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let tcp = TcpStream::connect((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("connection {i}"))?;
        let mut c = BufReader::with_capacity(128, tcp);
        let g = line(&mut c).await?;
        if !g.starts_with("+OK") {
            bail!("connection {i}: {}", g.trim_end());
        }
        greet.push(t.elapsed());
        conns.push(c);
    }
    println!(
        "{n} idle connections open in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    stats::report("connect-to-greeting", &mut greet);
    tokio::time::sleep(a.duration).await;
    if let (Some(pid), Some(b)) = (a.server_pid, before) {
        let after = proc_kb(pid, "VmRSS").unwrap_or(0);
        println!(
            "server RSS: {b} kB before, {after} kB with {n} idle connections ({:.2} kB per connection)",
            (after.saturating_sub(b)) as f64 / n as f64
        );
    }
    Ok(())
}
