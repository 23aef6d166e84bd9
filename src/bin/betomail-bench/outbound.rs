//! Outbound queue throughput to a fast sink. Sets up dnsmasq (d<i>.bench.test
//! -> mx<i mod addresses>.bench.test -> 127.0.0.11+...), the sink and a
//! fresh betomail data dir, then either
//! - drain mode (default): fills the queue with N messages while the server
//!   is stopped, starts `betomail serve` and times until the sink has all;
//! - live mode (`--live SECONDS`): `--clients` SMTP AUTH clients submit
//!   through the server's own listener while it delivers; prints accepted
//!   and delivered rates and the largest backlog (accepted, not delivered).

use super::sink;
use anyhow::{bail, Context};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Message size in octets.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Recipient domains (spread over the sink addresses).
    #[arg(long, default_value_t = 100)]
    domains: usize,
    /// Recipients per message, each in its own domain (drain mode).
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    #[command(flatten)]
    sink: sink::Args,
    /// outbound.max_connections of the server under test.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Live mode: submit over SMTP for this many seconds.
    #[arg(long)]
    live: Option<u64>,
    /// Live mode: concurrent submitting clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// The betomail binary (default: next to this one).
    #[arg(long)]
    betomail: Option<std::path::PathBuf>,
}

struct Setup {
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    dnsmasq: Child,
    submit_port: u16,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let counters = sink::start(&a.sink).await?;
    let mut s = setup(&a)?;
    let cfg = betomail::config::Config::load(&s.config)?;
    let store = betomail::app::App::open_store(&cfg)?;
    let body = message(a.size);
    let bin = match &a.betomail {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("betomail"),
    };
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&s.config)
        .args(["user", "add", "bench", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().map(|mut i| i.write_all(b"benchpw"));
            c.wait()
        })?;
    if !out.success() {
        bail!("betomail user add failed");
    }
    if a.live.is_none() {
        let t = Instant::now();
        for m in 0..a.messages {
            let rcpts: Vec<String> = (0..a.recipients)
                .map(|r| format!("u{m}@d{}.bench.test", (m + r) % a.domains))
                .collect();
            store
                .queue
                .enqueue("bench@be.test", &rcpts, b"", &mut &body[..], u64::MAX)?;
        }
        println!(
            "queued {} messages of {} octets in {:.2?}",
            a.messages,
            body.len(),
            t.elapsed()
        );
    }
    let mut server = Command::new(&bin)
        .arg("--config")
        .arg(&s.config)
        .arg("serve")
        .env("BETOMAIL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let result = match a.live {
        None => drain(&a, &counters, &store).await,
        Some(secs) => live(&a, secs, &s, &counters, &body).await,
    };
    let _ = server.kill();
    let _ = server.wait();
    let _ = s.dnsmasq.kill();
    let _ = s.dnsmasq.wait();
    let _ = std::fs::remove_dir_all(&s.dir);
    result
}

async fn drain(a: &Args, c: &sink::Counters, store: &betomail::store::Store) -> anyhow::Result<()> {
    let t = Instant::now();
    let want = (a.messages * a.recipients) as u64;
    let deadline = t + Duration::from_secs(600);
    while c.recipients.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = t.elapsed();
    let drained = loop {
        let st = store.queue.stats(std::time::SystemTime::now())?;
        if st.messages == 0 || Instant::now() > deadline {
            break t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "{} queued messages delivered in {delivered:.2?}: {:.0} msg/s ({} SMTP transactions, {} recipients, {} connections); queue empty after {drained:.2?}",
        a.messages,
        a.messages as f64 / delivered.as_secs_f64(),
        c.messages.load(Ordering::Relaxed),
        c.recipients.load(Ordering::Relaxed),
        c.connections.load(Ordering::Relaxed),
    );
    Ok(())
}

async fn live(
    a: &Args,
    secs: u64,
    s: &Setup,
    c: &Arc<sink::Counters>,
    body: &[u8],
) -> anyhow::Result<()> {
    let ready = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", s.submit_port))
        .await
        .is_err()
    {
        if Instant::now() > ready {
            bail!("betomail did not start listening");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..a.clients {
        let (accepted, body, port, domains) =
            (accepted.clone(), body.to_vec(), s.submit_port, a.domains);
        tasks.push(tokio::spawn(async move {
            submit(port, i, domains, &body, stop, &accepted).await
        }));
    }
    let mut backlog = 0u64;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (acc, del) = (
            accepted.load(Ordering::Relaxed),
            c.messages.load(Ordering::Relaxed),
        );
        backlog = backlog.max(acc.saturating_sub(del));
    }
    for t in tasks {
        t.await?.context("submitting client")?;
    }
    let acc = accepted.load(Ordering::Relaxed);
    let sent_at = start.elapsed();
    let del_during = c.messages.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.messages.load(Ordering::Relaxed) < acc && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let del = c.messages.load(Ordering::Relaxed);
    println!(
        "accepted {acc} messages in {sent_at:.2?} ({:.0} msg/s over {} clients); delivered meanwhile {del_during} ({:.0} msg/s); largest backlog {backlog}; all {del} delivered {:.2?} after the last acceptance",
        acc as f64 / sent_at.as_secs_f64(),
        a.clients,
        del_during as f64 / sent_at.as_secs_f64(),
        start.elapsed().saturating_sub(sent_at),
    );
    Ok(())
}

/// One client: AUTH PLAIN, then pipelined MAIL/RCPT/DATA until `stop`.
async fn submit(
    port: u16,
    client: usize,
    domains: usize,
    body: &[u8],
    stop: Instant,
    accepted: &AtomicU64,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, "220").await?;
    w.write_all(b"EHLO bench.test\r\nAUTH PLAIN AGJlbmNoAGJlbmNocHc=\r\n")
        .await?;
    expect(&mut r, "250").await?;
    expect(&mut r, "235").await?;
    let mut n = 0usize;
    while Instant::now() < stop {
        let cmds = format!(
            "MAIL FROM:<bench@be.test>\r\nRCPT TO:<c{client}m{n}@d{}.bench.test>\r\nDATA\r\n",
            (client + n * 7) % domains
        );
        w.write_all(cmds.as_bytes()).await?;
        expect(&mut r, "250").await?;
        expect(&mut r, "250").await?;
        expect(&mut r, "354").await?;
        w.write_all(body).await?;
        w.write_all(b".\r\n").await?;
        expect(&mut r, "250").await?;
        accepted.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
    w.write_all(b"QUIT\r\n").await?;
    Ok(())
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection closed waiting for {code}");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    if !line.starts_with(code) {
        bail!("expected {code}, got {}", line.trim_end());
    }
    Ok(())
}

/// About `size` octets: a few headers, then 76-octet lines.
fn message(size: usize) -> Vec<u8> {
    let mut body = b"From: bench@be.test\r\nSubject: outbound bench\r\n\r\n".to_vec();
    while body.len() + 2 < size {
        let n = (size - body.len() - 2).min(76);
        body.extend(std::iter::repeat_n(b'x', n));
        body.extend_from_slice(b"\r\n");
    }
    body
}

fn setup(a: &Args) -> anyhow::Result<Setup> {
    let dir = std::env::temp_dir().join(format!("betomail-bench-outbound-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let dns_port = free_port()?;
    let submit_port = free_port()?;
    let mut dns_conf = String::from("local=/test/\n");
    for d in 0..a.domains {
        dns_conf += &format!(
            "mx-host=d{d}.bench.test,mx{}.bench.test,10\n",
            d % a.sink.count as usize
        );
    }
    for i in 0..a.sink.count {
        let ip = std::net::Ipv4Addr::from(u32::from(a.sink.first) + i as u32);
        dns_conf += &format!("host-record=mx{i}.bench.test,{ip}\n");
    }
    std::fs::write(dir.join("dnsmasq.conf"), dns_conf)?;
    let dnsmasq = Command::new(if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    })
    .args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--user=root",
        "--pid-file=",
        "--cache-size=0",
    ])
    .arg(format!("--port={dns_port}"))
    .arg(format!(
        "--conf-file={}",
        dir.join("dnsmasq.conf").display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .context("starting dnsmasq")?;
    let config = dir.join("betomail.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"bench.be.test\"\ndata_dir = {:?}\nlocal_domains = [\"be.test\"]\n\
             [dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n\
             [outbound]\nmx_port = {}\nmax_connections = {}\nretry_schedule = [\"1s\"]\n\
             [[listener]]\nname = \"smtpa\"\nprotocol = \"smtp\"\nbind = \"127.0.0.1:{submit_port}\"\n\
             relay_by = [\"auth\"]\nplaintext_auth = true\n",
            dir.join("data"),
            a.sink.port,
            a.max_connections
        ),
    )?;
    Ok(Setup {
        dir,
        config,
        dnsmasq,
        submit_port,
    })
}

/// A port free for both UDP and TCP (dnsmasq binds both).
fn free_port() -> std::io::Result<u16> {
    loop {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}
