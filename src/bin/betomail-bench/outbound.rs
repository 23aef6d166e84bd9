//! Outbound queue throughput: fills a fresh queue with N messages to
//! recipients in many domains, starts `betomail serve` on it, and times
//! until the fast sink has received them all. MX records come from dnsmasq
//! (d<i>.bench.test -> mx<i mod addresses>.bench.test -> 127.0.0.11+...).

use super::sink;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    /// Recipients per message, each in its own domain.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    #[command(flatten)]
    sink: sink::Args,
    /// outbound.max_connections of the server under test.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// The betomail binary (default: next to this one).
    #[arg(long)]
    betomail: Option<std::path::PathBuf>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let counters = sink::start(&a.sink).await?;
    let dir = tempfile_dir()?;
    let dns_port = free_udp_port()?;
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
    let mut dnsmasq = Command::new(if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
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
    .spawn()?;

    let config = dir.join("betomail.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"bench.be.test\"\ndata_dir = {:?}\nlocal_domains = [\"be.test\"]\n\
             [dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n\
             [outbound]\nmx_port = {}\nmax_connections = {}\nretry_schedule = [\"1s\"]\n\
             [[listener]]\nname = \"pop\"\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\n",
            dir.join("data"),
            a.sink.port,
            a.max_connections
        ),
    )?;

    let t = Instant::now();
    let cfg = betomail::config::Config::load(&config)?;
    let store = betomail::app::App::open_store(&cfg)?;
    let mut body = Vec::with_capacity(a.size);
    body.extend_from_slice(b"From: bench@be.test\r\nSubject: outbound bench\r\n\r\n");
    while body.len() + 2 < a.size {
        let n = (a.size - body.len() - 2).min(76);
        body.extend(std::iter::repeat_n(b'x', n));
        body.extend_from_slice(b"\r\n");
    }
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

    let bin = match a.betomail {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("betomail"),
    };
    let mut server = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("BETOMAIL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let t = Instant::now();
    let want = (a.messages * a.recipients) as u64;
    let deadline = t + Duration::from_secs(600);
    while counters.recipients.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = t.elapsed();
    let drained = loop {
        let st = betomail::delivery::outbound::queue_stats(&store)?;
        if st.messages == 0 || Instant::now() > deadline {
            break t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = server.kill();
    let _ = server.wait();
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    let txns = counters.messages.load(Ordering::Relaxed);
    println!(
        "{} queued messages delivered in {delivered:.2?}: {:.0} msg/s ({txns} SMTP transactions, {} recipients, {} connections); queue empty after {drained:.2?}",
        a.messages,
        a.messages as f64 / delivered.as_secs_f64(),
        counters.recipients.load(Ordering::Relaxed),
        counters.connections.load(Ordering::Relaxed),
    );
    std::io::stdout().flush()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("betomail-bench-outbound-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
