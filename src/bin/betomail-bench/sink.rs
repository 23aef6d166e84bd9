//! A fast SMTP sink: accepts every message (PIPELINING, 8BITMIME) on one
//! port at several loopback addresses, counts them and throws them away.
//! The receiving end of the outbound benchmark; also runnable alone.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args)]
pub struct Args {
    /// First address of the range, e.g. 127.0.0.11.
    #[arg(long, default_value = "127.0.0.11")]
    pub first: std::net::Ipv4Addr,
    /// How many consecutive addresses to listen on.
    #[arg(long, default_value_t = 10)]
    pub count: u8,
    #[arg(long, default_value_t = 2525)]
    pub port: u16,
}

#[derive(Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub recipients: AtomicU64,
    pub connections: AtomicU64,
}

/// Binds every address, then serves in the background.
pub async fn start(a: &Args) -> anyhow::Result<Arc<Counters>> {
    let counters = Arc::new(Counters::default());
    for i in 0..a.count {
        let ip = IpAddr::V4((u32::from(a.first) + i as u32).into());
        let l = TcpListener::bind(SocketAddr::new(ip, a.port)).await?;
        let c = counters.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                c.connections.fetch_add(1, Ordering::Relaxed);
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = session(tcp, &c).await;
                });
            }
        });
    }
    Ok(counters)
}

async fn session(tcp: TcpStream, c: &Counters) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let (r, w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    w.flush().await?;
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" {
                in_data = false;
                c.messages.fetch_add(1, Ordering::Relaxed);
                w.write_all(b"250 2.0.0 ok\r\n").await?;
            }
        } else {
            let verb = line.get(..4).unwrap_or(b"").to_ascii_uppercase();
            let reply: &[u8] = match &verb[..] {
                b"EHLO" => b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n",
                b"RCPT" => {
                    c.recipients.fetch_add(1, Ordering::Relaxed);
                    b"250 2.1.5 ok\r\n"
                }
                b"DATA" => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                b"QUIT" => {
                    w.write_all(b"221 bye\r\n").await?;
                    return w.flush().await;
                }
                _ => b"250 ok\r\n",
            };
            w.write_all(reply).await?;
        }
        // Answer a pipelined batch in one write.
        if r.buffer().is_empty() {
            w.flush().await?;
        }
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let c = start(&a).await?;
    println!("sink on {}..+{} port {}", a.first, a.count, a.port);
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = c.messages.load(Ordering::Relaxed);
        if n != last {
            println!("{n} messages ({}/s)", n - last);
            last = n;
        }
    }
}
