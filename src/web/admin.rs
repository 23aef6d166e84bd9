//! Operator pages (admin accounts only): accounts (add, disable/enable,
//! reset password), POP locks (clear), relay grants and the outbound queue
//! (retry, delete). Each operation is the CLI's own function or store call.

use super::form::Form;
use super::layout::{csrf_field, esc, page, Notice};
use super::remote_mail::human_size;
use super::session::{Ctx, User};
use crate::cli::fmt_time;
use crate::delivery::queue_cli;
use crate::store::RecipientState;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::SystemTime;

/// Accounts shown at once; the search box narrows the list.
const MAX_ACCOUNTS_SHOWN: usize = 200;

/// The logged-in operator (checking the form's CSRF token for a post).
pub async fn admin(ctx: &Ctx, form: Option<&Form>) -> Result<User, Response> {
    let user = match form {
        Some(f) => ctx.user_for_post(f).await?,
        None => ctx.user().await?,
    };
    if !user.account.admin {
        return Err(ctx.error_page(
            StatusCode::FORBIDDEN,
            ctx.lang.t(
                "このページは管理者専用です。",
                "This page is for operators only.",
            ),
        ));
    }
    Ok(user)
}

/// An operator's form post with its CSRF token checked.
async fn admin_post(ctx: &Ctx, body: &Bytes) -> Result<(Form, User), Response> {
    let form = Form::from_body(body);
    let user = admin(ctx, Some(&form)).await?;
    Ok((form, user))
}

pub async fn page_handler(ctx: Ctx) -> Response {
    match admin(&ctx, None).await {
        Ok(user) => render(&ctx, &user, StatusCode::OK, String::new()).await,
        Err(r) => r,
    }
}

/// What an operation did: a summary (logged and shown) and, for generated
/// passwords, a secret shown once and never logged.
struct Done {
    summary: String,
    secret: Option<String>,
}

impl Done {
    fn said(summary: String) -> anyhow::Result<Done> {
        Ok(Done {
            summary,
            secret: None,
        })
    }
}

/// Runs an operation; its outcome becomes the page's notice.
async fn outcome<F>(ctx: &Ctx, user: &User, op: F) -> Response
where
    F: FnOnce(&crate::store::Store) -> anyhow::Result<Done> + Send + 'static,
{
    let store = ctx.app().store.clone();
    let result = tokio::task::spawn_blocking(move || op(&store))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("operation failed: {e}")));
    match result {
        Ok(done) => {
            tracing::info!(admin = %user.account.name, "{}", done.summary);
            let mut html = esc(&done.summary);
            if let Some(secret) = done.secret {
                html += &format!(
                    r#": <span class="secret">{}</span> <span class="muted">(shown once)</span>"#,
                    esc(&secret)
                );
            }
            render(ctx, user, StatusCode::OK, Notice::Good.html(&html)).await
        }
        Err(e) => {
            let n = Notice::Bad.html(&esc(&format!("{e:#}")));
            render(ctx, user, StatusCode::BAD_REQUEST, n).await
        }
    }
}

fn account_name(form: &Form) -> anyhow::Result<String> {
    form.get("name")
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no account given"))
}

fn find(store: &crate::store::Store, name: &str) -> anyhow::Result<crate::store::Account> {
    store
        .accounts
        .find(name)?
        .ok_or_else(|| anyhow::anyhow!("no account {name:?}"))
}

pub async fn accounts(ctx: Ctx, body: Bytes) -> Response {
    let (form, user) = match admin_post(&ctx, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let config = ctx.app().config.clone();
    let action = form.get("action").unwrap_or("").to_string();
    let name = account_name(&form);
    let address = form.get("address").map(str::to_string);
    let make_admin = form.get("admin").is_some();
    let web = ctx.web.clone();
    outcome(&ctx, &user, move |store| {
        let sessions = &web.sessions;
        let name = name?;
        if action == "add" {
            let pw = crate::cli::add_account(store, &config, &name, address.as_deref(), None)?;
            if make_admin {
                store.accounts.set_admin(&name, true)?;
            }
            return Ok(Done {
                summary: format!("added {name} with a generated password"),
                secret: pw,
            });
        }
        let a = find(store, &name)?;
        match action.as_str() {
            "disable" | "enable" => {
                store.accounts.set_disabled(&a.name, action == "disable")?;
                web.app.auth.forget(a.id);
                Done::said(format!("{action}d {}", a.name))
            }
            "reset" => {
                let pw = crate::cli::reset_password(store, &config.auth.policy(), &a.name)?;
                web.app.auth.forget(a.id);
                sessions.end_others(&a.name, None);
                Ok(Done {
                    summary: format!("new password for {}", a.name),
                    secret: Some(pw),
                })
            }
            _ => Err(anyhow::anyhow!("unknown action")),
        }
    })
    .await
}

pub async fn locks(ctx: Ctx, body: Bytes) -> Response {
    let (form, user) = match admin_post(&ctx, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = account_name(&form);
    outcome(&ctx, &user, move |store| {
        // By login name or address, as everywhere (SEED-1).
        let name = find(store, &name?)?.name;
        Done::said(if store.locks.clear(&name)? {
            format!("lock of {name} cleared")
        } else {
            format!("{name} was not locked")
        })
    })
    .await
}

pub async fn queue(ctx: Ctx, body: Bytes) -> Response {
    let (form, user) = match admin_post(&ctx, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = form.get("id").unwrap_or("").to_string();
    let action = form.get("action").unwrap_or("").to_string();
    let res = outcome(&ctx, &user, move |store| match action.as_str() {
        "retry" => {
            let n = queue_cli::retry(store, &id)?;
            Done::said(format!("{n} recipient(s) of {id} due now"))
        }
        "delete" => {
            queue_cli::delete(store, &id)?;
            Done::said(format!("deleted {id}"))
        }
        _ => Err(anyhow::anyhow!("unknown action")),
    })
    .await;
    ctx.app().queue_wakeup.notify_one();
    res
}

fn button(csrf: &str, action: &str, hidden: &[(&str, &str)], label: &str, class: &str) -> String {
    let fields: String = hidden
        .iter()
        .map(|(k, v)| format!(r#"<input type="hidden" name="{k}" value="{}">"#, esc(v)))
        .collect();
    format!(
        r#"<form method="post" action="{action}" class="inline">{}{fields}<button class="small {class}" type="submit">{label}</button></form>"#,
        csrf_field(csrf)
    )
}

async fn render(ctx: &Ctx, user: &User, status: StatusCode, notice: String) -> Response {
    let l = ctx.lang;
    let filter = super::form::Form::from_query(ctx.query.as_deref())
        .get("q")
        .unwrap_or("")
        .to_ascii_lowercase();
    let f = filter.clone();
    let data = ctx
        .app()
        .store
        .run(move |s| {
            let mut accounts = s.accounts.list()?;
            let total = accounts.len();
            accounts.retain(|a| f.is_empty() || a.name.contains(&f) || a.address.contains(&f));
            accounts.truncate(MAX_ACCOUNTS_SHOWN);
            Ok((
                total,
                accounts,
                s.locks.list()?,
                s.grants.list(SystemTime::now())?,
                s.queue.list()?,
            ))
        })
        .await;
    let (total, accounts, locks, grants, queue) = match data {
        Ok(d) => d,
        Err(e) => return ctx.store_error(e),
    };
    let csrf = &user.csrf;
    let acct_rows: String = accounts
        .iter()
        .map(|a| {
            let mut flags = String::new();
            if a.disabled {
                flags += r#"<span class="tag off">disabled</span> "#;
            }
            if a.admin {
                flags += r#"<span class="tag">admin</span> "#;
            }
            if a.smtp_password_hash.is_some() {
                flags += r#"<span class="tag">smtp-password</span> "#;
            }
            let toggle = if a.disabled { "enable" } else { "disable" };
            format!(
                r#"<tr><td class="mono" data-label="name">{}</td><td class="mono" data-label="address">{}</td><td>{flags}</td><td>{} {}</td></tr>"#,
                esc(&a.name),
                esc(&a.address),
                button(csrf, "/admin/accounts", &[("name", &a.name), ("action", toggle)], toggle, "secondary"),
                button(csrf, "/admin/accounts", &[("name", &a.name), ("action", "reset")], "reset password", "secondary"),
            )
        })
        .collect();
    let lock_rows: String = locks
        .iter()
        .map(|k| {
            format!(
                r#"<tr><td class="mono">{}</td><td class="mono">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&k.account),
                esc(&k.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
                esc(&fmt_time(k.acquired)),
                esc(&fmt_time(k.expires)),
                button(csrf, "/admin/locks", &[("name", &k.account)], "clear", "danger"),
            )
        })
        .collect();
    let grant_rows: String = grants
        .iter()
        .map(|g| {
            format!(
                r#"<tr><td class="mono">{}</td><td class="mono">{}</td><td>{}</td></tr>"#,
                esc(&g.ip.to_string()),
                esc(&g.account),
                esc(&fmt_time(g.until))
            )
        })
        .collect();
    let queue_rows: String = queue
        .iter()
        .map(|m| {
            let rcpts: String = m
                .recipients
                .iter()
                .map(|r| {
                    format!(
                        "{} <span class=\"tag{}\">{}</span> {}<br>",
                        esc(&r.address),
                        if r.state == RecipientState::Failed { " off" } else { "" },
                        queue_cli::state(r.state),
                        esc(r.last_reply.as_deref().unwrap_or(""))
                    )
                })
                .collect();
            format!(
                r#"<tr><td class="mono">{id}</td><td>{created}</td><td class="mono">{from}</td><td>{rcpts}</td><td class="num">{size}</td><td>{} {}</td></tr>"#,
                button(csrf, "/admin/queue", &[("id", &m.id), ("action", "retry")], "retry", "secondary"),
                button(csrf, "/admin/queue", &[("id", &m.id), ("action", "delete")], "delete", "danger"),
                id = esc(&m.id),
                created = esc(&fmt_time(m.created)),
                from = esc(queue_cli::sender(m)),
                size = human_size(m.size),
            )
        })
        .collect();
    let empty = |rows: &str, cols: usize| {
        if rows.is_empty() {
            format!(r#"<tr><td colspan="{cols}" class="muted">—</td></tr>"#)
        } else {
            rows.to_string()
        }
    };
    let body = format!(
        r#"<h1>{title}</h1>{notice}
<section class="card"><h2>Accounts ({total})</h2>
<form method="get" action="/admin" class="row"><input name="q" value="{filter}" placeholder="name / address" aria-label="search"><button class="secondary" type="submit">search</button></form>
<div class="scroll"><table><thead><tr><th>name</th><th>address</th><th></th><th></th></tr></thead><tbody>{acct_rows}</tbody></table></div>
<h2>Add an account</h2>
<form method="post" action="/admin/accounts" class="row">{csrf_f}<input type="hidden" name="action" value="add">
<input name="name" placeholder="btm0001" required maxlength="64" aria-label="name"><input name="address" placeholder="(address, optional)" maxlength="254" aria-label="address">
<label class="check"><input type="checkbox" name="admin" value="1"> admin</label><button type="submit">add</button></form>
<p class="muted">{pw_note}</p></section>
<section class="card"><h2>POP locks</h2><div class="scroll"><table><thead><tr><th>account</th><th>peer</th><th>since</th><th>expires</th><th></th></tr></thead><tbody>{locks}</tbody></table></div></section>
<section class="card"><h2>POP-before-SMTP grants</h2><div class="scroll"><table><thead><tr><th>ip</th><th>account</th><th>until</th></tr></thead><tbody>{grants}</tbody></table></div></section>
<section class="card"><h2>Queue ({qn})</h2><div class="scroll"><table><thead><tr><th>id</th><th>queued</th><th>from</th><th>recipients</th><th>size</th><th></th></tr></thead><tbody>{queue}</tbody></table></div></section>"#,
        title = l.t("運用管理", "Operator"),
        filter = esc(&filter),
        csrf_f = csrf_field(csrf),
        pw_note = l.t(
            "パスワードは自動生成され、一度だけ表示されます。",
            "The password is generated and shown once.",
        ),
        locks = empty(&lock_rows, 5),
        grants = empty(&grant_rows, 3),
        qn = queue.len(),
        queue = empty(&queue_rows, 6),
    );
    (status, page(ctx, l.t("運用管理", "Operator"), &body)).into_response()
}
