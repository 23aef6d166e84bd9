//! `GET /metrics` in the Prometheus text format (version 0.0.4): queue
//! depth by recipient state, live POP locks, live grants, accounts.

use super::session::Ctx;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::time::SystemTime;

pub async fn metrics(ctx: Ctx) -> Response {
    // Account and queue figures are for the operator: a scraper on this
    // host, or a logged-in operator; not every visitor of the portal.
    if !ctx.ip.is_loopback() {
        if let Err(r) = super::admin::admin(&ctx, None).await {
            return r;
        }
    }
    let counts = ctx
        .app()
        .store
        .run(|s| {
            let accounts = s.accounts.list()?;
            Ok((
                s.queue.stats(SystemTime::now())?,
                s.locks.list()?.len(),
                s.grants.list(SystemTime::now())?.len(),
                accounts.len(),
                accounts.iter().filter(|a| a.disabled).count(),
            ))
        })
        .await;
    let (queue, locks, grants, accounts, disabled) = match counts {
        Ok(c) => c,
        Err(e) => return ctx.store_error(e),
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "betomail_queue_messages",
        "Messages in the outbound queue.",
        &[("", queue.messages as u64)],
    );
    gauge(
        "betomail_queue_bytes",
        "Octets of the messages in the outbound queue.",
        &[("", queue.bytes)],
    );
    gauge(
        "betomail_queue_recipients",
        "Recipients of queued messages by state.",
        &[
            ("{state=\"pending\"}", queue.pending as u64),
            ("{state=\"due\"}", queue.due as u64),
            ("{state=\"delivered\"}", queue.delivered as u64),
            ("{state=\"failed\"}", queue.failed as u64),
        ],
    );
    gauge(
        "betomail_queue_oldest_age_seconds",
        "Age of the oldest queued message (0 when the queue is empty).",
        &[("", queue.oldest_age_seconds.unwrap_or(0))],
    );
    gauge(
        "betomail_pop_locks",
        "Live POP mailbox locks.",
        &[("", locks as u64)],
    );
    gauge(
        "betomail_relay_grants",
        "Live POP-before-SMTP grants.",
        &[("", grants as u64)],
    );
    gauge(
        "betomail_accounts",
        "Accounts by state.",
        &[
            ("{state=\"enabled\"}", (accounts - disabled) as u64),
            ("{state=\"disabled\"}", disabled as u64),
        ],
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
