//! `GET /metrics` in the Prometheus text format (version 0.0.4): queue
//! depth by recipient state, live POP locks, live grants, accounts.

use super::session::Ctx;
use crate::store::RecipientState;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::time::SystemTime;

pub async fn metrics(ctx: Ctx) -> Response {
    let counts = ctx
        .app()
        .store
        .run(|s| {
            let (mut pending, mut delivered, mut failed) = (0usize, 0usize, 0usize);
            let queue = s.queue.list()?;
            for r in queue.iter().flat_map(|m| &m.recipients) {
                match r.state {
                    RecipientState::Pending => pending += 1,
                    RecipientState::Delivered => delivered += 1,
                    RecipientState::Failed => failed += 1,
                }
            }
            let accounts = s.accounts.list()?;
            Ok([
                queue.len(),
                pending,
                delivered,
                failed,
                s.locks.list()?.len(),
                s.grants.list(SystemTime::now())?.len(),
                accounts.len(),
                accounts.iter().filter(|a| a.disabled).count(),
            ])
        })
        .await;
    let [messages, pending, delivered, failed, locks, grants, accounts, disabled] = match counts {
        Ok(c) => c,
        Err(e) => return ctx.store_error(e),
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, usize)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "betomail_queue_messages",
        "Messages in the outbound queue.",
        &[("", messages)],
    );
    gauge(
        "betomail_queue_recipients",
        "Recipients of queued messages by state.",
        &[
            ("{state=\"pending\"}", pending),
            ("{state=\"delivered\"}", delivered),
            ("{state=\"failed\"}", failed),
        ],
    );
    gauge(
        "betomail_pop_locks",
        "Live POP mailbox locks.",
        &[("", locks)],
    );
    gauge(
        "betomail_relay_grants",
        "Live POP-before-SMTP grants.",
        &[("", grants)],
    );
    gauge(
        "betomail_accounts",
        "Accounts by state.",
        &[
            ("{state=\"enabled\"}", accounts - disabled),
            ("{state=\"disabled\"}", disabled),
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
