//! betomail-bench: a load tool for betomail's protocols. Each subcommand
//! drives one protocol over TCP and prints throughput and latency figures
//! (results and the commands that produced them are in BENCHMARKS.md).

mod hash;
mod outbound;
mod pop3;
mod sink;
mod smtp;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "betomail-bench", about = "Load generator for betomail")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// POP3 sessions: login, STAT, RETR all, DELE all, QUIT.
    Pop3(Box<pop3::Args>),
    /// SMTP transactions: MAIL, RCPT, DATA.
    Smtp(smtp::Args),
    /// Outbound queue drain rate to a fast sink (runs dnsmasq and betomail).
    Outbound(outbound::Args),
    /// A fast SMTP sink on several loopback addresses.
    Sink(sink::Args),
    /// The bare argon2id hash rate (the ceiling of first logins per second).
    Hash(hash::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Pop3(a) => pop3::run(*a).await,
            Command::Smtp(a) => smtp::run(a).await,
            Command::Outbound(a) => outbound::run(a).await,
            Command::Sink(a) => sink::run(a).await,
            // CPU only: its own threads, nothing async.
            Command::Hash(a) => hash::run(a),
        }
    })
}
