//! SMTP load: `--concurrency` clients, each on its own connection, send
//! messages of `--size` octets to `--to` for `--duration`, pipelining
//! MAIL/RCPT/DATA (RFC 2920). Prints messages/s acknowledged with 250 and
//! the latency of the final 250 (from the end-of-data dot) and of the whole
//! transaction (from MAIL).

use crate::stats;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1025)]
    port: u16,
    /// Recipient of every message.
    #[arg(long)]
    to: String,
    #[arg(long, default_value = "bench@bench.test")]
    from: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Message size in octets.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// `user:password` for AUTH PLAIN (e.g. on an auth-relay listener).
    #[arg(long)]
    auth: Option<String>,
}

/// A message of about `size` octets: a few headers and 76-octet lines.
fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: bench@bench.test\r\nTo: bench\r\nSubject: betomail-bench\r\n\r\n".to_vec();
    let line = [b"x".repeat(76), b"\r\n".to_vec()].concat();
    while m.len() + line.len() <= size {
        m.extend_from_slice(&line);
    }
    m
}

struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Client {
    async fn connect(a: &Args) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect((a.host.as_str(), a.port)).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            line: String::new(),
        };
        c.reply(220).await?;
        c.w.write_all(b"EHLO bench.test\r\n").await?;
        c.reply(250).await?;
        if let Some(auth) = &a.auth {
            use base64::Engine;
            let (u, p) = auth.split_once(':').context("--auth user:password")?;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{u}\0{p}"));
            c.w.write_all(format!("AUTH PLAIN {token}\r\n").as_bytes())
                .await?;
            c.reply(235).await?;
        }
        Ok(c)
    }

    /// Reads one (multi-line) reply and checks its code.
    async fn reply(&mut self, want: u16) -> anyhow::Result<()> {
        loop {
            self.line.clear();
            if self.r.read_line(&mut self.line).await? == 0 {
                bail!("connection closed");
            }
            if self.line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if !self.line.starts_with(&want.to_string()) {
            bail!("expected {want}, got {}", self.line.trim_end());
        }
        Ok(())
    }
}

/// (latency of the final 250, latency of the transaction) per message.
async fn worker(
    a: &Args,
    until: Instant,
    body: &[u8],
) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let mut c = Client::connect(a).await?;
    let envelope = format!("MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n", a.from, a.to);
    let mut out = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        c.w.write_all(envelope.as_bytes()).await?;
        c.reply(250).await?;
        c.reply(250).await?;
        c.reply(354).await?;
        c.w.write_all(body).await?;
        let dot = Instant::now();
        c.w.write_all(b".\r\n").await?;
        c.reply(250).await?;
        out.push((dot.elapsed(), start.elapsed()));
    }
    c.w.write_all(b"QUIT\r\n").await?;
    Ok(out)
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let a = std::sync::Arc::new(a);
    let body = std::sync::Arc::new(message(a.size));
    let started = Instant::now();
    let until = started + Duration::from_secs(a.duration);
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (a, body) = (a.clone(), body.clone());
            tokio::spawn(async move { worker(&a, until, &body).await })
        })
        .collect();
    let mut finals = Vec::new();
    let mut whole = Vec::new();
    for t in tasks {
        for (f, w) in t.await?? {
            finals.push(f);
            whole.push(w);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "smtp {}:{} to={} concurrency={} size={} duration={:.1}s",
        a.host, a.port, a.to, a.concurrency, a.size, secs
    );
    println!(
        "messages: {} ({:.0}/s)",
        finals.len(),
        finals.len() as f64 / secs
    );
    stats::report("final 250 after the dot", &mut finals);
    stats::report("whole transaction", &mut whole);
    Ok(())
}
