//! `betomail queue list|show|delete|flush|retry`: the operator's view of the
//! outbound queue, read straight from the store (works while `serve` runs).

use crate::app::App;
use crate::cli::fmt_time;
use crate::config::Config;
use crate::smtp::address::{self, Path};
use crate::store::{QueuedMessage, RecipientState, Store};
use anyhow::anyhow;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum QueueCmd {
    /// One line per queued message.
    List,
    /// Every recipient's state, attempts, next try and last reply.
    Show { id: String },
    /// Remove a message without delivering or bouncing it.
    Delete { id: String },
    /// Make every pending recipient due now.
    Flush,
    /// Make one message's pending recipients due now.
    Retry { id: String },
    /// Queue a message from stdin for delivery (like sendmail); a running
    /// `serve` picks it up within a second.
    Inject {
        /// Envelope sender; "" is the null sender.
        #[arg(long)]
        from: String,
        #[arg(long, required = true, num_args = 1..)]
        to: Vec<String>,
    },
    /// Queue depth: messages, recipients by state, oldest age.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn state(s: RecipientState) -> &'static str {
    match s {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::Failed => "failed",
    }
}

pub fn sender(m: &QueuedMessage) -> &str {
    if m.sender.is_empty() {
        "<>"
    } else {
        &m.sender
    }
}

/// Removes a queued message without delivering or bouncing it (CLI and portal).
/// A path for the queue, as the SMTP session would store it: what the
/// address grammar accepts, printed by it (the form the client writes).
/// Only a sender may be `<>` or `<postmaster>`.
fn queued_path(raw: &str, sender: bool) -> anyhow::Result<String> {
    match address::parse_path(raw.as_bytes()) {
        Ok(p @ Path::Mailbox(_)) => Ok(p.to_string()),
        Ok(p) if sender => Ok(p.to_string()),
        _ => Err(anyhow!("{raw:?} is not a valid RFC 5321 address")),
    }
}

pub fn delete(store: &Store, id: &str) -> anyhow::Result<()> {
    if !store.queue.remove(id)? {
        return Err(anyhow!("no queued message {id}"));
    }
    Ok(())
}

/// Makes one message's pending recipients due now; returns how many.
pub fn retry(store: &Store, id: &str) -> anyhow::Result<usize> {
    if store.queue.get(id)?.is_none() {
        return Err(anyhow!("no queued message {id}"));
    }
    Ok(store.queue.retry_now(Some(id))?)
}

pub fn run(cmd: QueueCmd, config: &Config) -> anyhow::Result<ExitCode> {
    let store = App::open_store(config)?;
    match cmd {
        QueueCmd::List => {
            let list = store.queue.list()?;
            for m in &list {
                let pending = m
                    .recipients
                    .iter()
                    .filter(|r| r.state == RecipientState::Pending)
                    .count();
                println!(
                    "{}\t{}\t{} octets\t{}\t{}/{} pending",
                    m.id,
                    fmt_time(m.created),
                    m.size,
                    sender(m),
                    pending,
                    m.recipients.len()
                );
            }
            println!("{} message(s) in the queue", list.len());
        }
        QueueCmd::Show { id } => {
            let m = store
                .queue
                .get(&id)?
                .ok_or_else(|| anyhow!("no queued message {id}"))?;
            println!("id:       {}", m.id);
            println!("from:     {}", sender(&m));
            println!("queued:   {}", fmt_time(m.created));
            println!("size:     {}", m.size);
            for r in &m.recipients {
                println!(
                    "to:       {}\t{}\tattempts {}\tnext {}\t{}",
                    r.address,
                    state(r.state),
                    r.attempts,
                    if r.state == RecipientState::Pending {
                        fmt_time(r.next_try)
                    } else {
                        "-".into()
                    },
                    r.last_reply.as_deref().unwrap_or("")
                );
            }
        }
        QueueCmd::Delete { id } => {
            delete(&store, &id)?;
            println!("deleted {id}");
        }
        QueueCmd::Flush => {
            let n = store.queue.retry_now(None)?;
            println!("{n} recipient(s) due now");
        }
        QueueCmd::Inject { from, to } => {
            let from = queued_path(&from, true)?;
            let to = to
                .iter()
                .map(|a| queued_path(a, false))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let id = store.queue.enqueue(
                &from,
                &to,
                b"",
                &mut std::io::stdin().lock(),
                config.max_message_size,
            )?;
            println!("queued as {id}");
        }
        QueueCmd::Stats { json } => {
            let st = store.queue.stats(std::time::SystemTime::now())?;
            if json {
                println!("{}", serde_json::to_string(&st)?);
            } else {
                println!("messages:   {}", st.messages);
                println!("bytes:      {}", st.bytes);
                println!(
                    "recipients: {} pending ({} due now), {} delivered, {} failed",
                    st.pending, st.due, st.delivered, st.failed
                );
                match st.oldest_age_seconds {
                    Some(s) => println!(
                        "oldest:     {}",
                        humantime::format_duration(std::time::Duration::from_secs(s))
                    ),
                    None => println!("oldest:     -"),
                }
            }
        }
        QueueCmd::Retry { id } => {
            let n = retry(&store, &id)?;
            println!("{n} recipient(s) of {id} due now");
        }
    }
    Ok(ExitCode::SUCCESS)
}
