//! "My settings" (SEED-18): the servers and ports to put in a mail program,
//! the SMTP AUTH user name, this browser's POP-before-SMTP grant, changing
//! the password, and the separate SMTP AUTH password (SEED-3, shown once).

use super::form::Form;
use super::layout::{csrf_field, esc, page, port_text, Notice};
use super::session::{Ctx, User};
use super::Lang;
use crate::auth::{AuthResult, Credential, Purpose};
use crate::config::{Config, Listener, Protocol, RelayBy, TlsMode};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::SystemTime;

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;

pub async fn page_handler(ctx: Ctx) -> Response {
    match ctx.user().await {
        Ok(user) => render(&ctx, &user, StatusCode::OK, "").await,
        Err(r) => r,
    }
}

pub async fn change_password(ctx: Ctx, body: Bytes) -> Response {
    let form = Form::from_body(&body);
    let user = match ctx.user_for_post(&form).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let l = ctx.lang;
    let (current, new, again) = (form.raw("current"), form.raw("new"), form.raw("new2"));
    let problem = if new != again {
        Some(l.t(
            "新しいパスワードが2回とも同じになるよう入力してください。",
            "The two new passwords differ.",
        ))
    } else if new.chars().count() < MIN_PASSWORD || new.len() > MAX_PASSWORD {
        Some(l.t(
            "新しいパスワードは8文字以上にしてください。",
            "The new password needs at least 8 characters.",
        ))
    } else if new.chars().any(|c| c.is_control()) {
        Some(l.t(
            "パスワードに制御文字は使えません。",
            "Passwords cannot contain control characters.",
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        return render(&ctx, &user, StatusCode::BAD_REQUEST, &Notice::Bad.html(p)).await;
    }
    let auth = &ctx.app().auth;
    let checked = auth
        .login(
            ctx.ip,
            user.account.name.clone(),
            Credential::Password(current.to_string()),
            Purpose::Web,
        )
        .await;
    match checked {
        AuthResult::Ok(_) => {}
        AuthResult::Failed => {
            let n = Notice::Bad.html(l.t(
                "現在のパスワードが正しくありません。",
                "The current password is incorrect.",
            ));
            return render(&ctx, &user, StatusCode::BAD_REQUEST, &n).await;
        }
        AuthResult::TempFail(e) => {
            tracing::warn!(error = %e, "password change: store unavailable");
            return ctx.unavailable();
        }
    }
    let Some(hash) = auth.hash(new).await else {
        return ctx.unavailable();
    };
    let name = user.account.name.clone();
    if let Err(e) = ctx
        .app()
        .store
        .run(move |s| s.accounts.set_password(&name, &hash))
        .await
    {
        return ctx.store_error(e);
    }
    auth.forget(user.account.id);
    let current = ctx.session.as_ref().map(|(id, _)| id.as_str());
    ctx.web.sessions.end_others(&user.account.name, current);
    tracing::info!(account = %user.account.name, "password changed in the portal");
    let n = Notice::Good.html(l.t(
        "パスワードを変更しました。メールソフトのパスワードも新しいものに変更してください。",
        "Your password was changed. Change it in your mail program too.",
    ));
    render(&ctx, &user, StatusCode::OK, &n).await
}

pub async fn smtp_password(ctx: Ctx, body: Bytes) -> Response {
    let form = Form::from_body(&body);
    let mut user = match ctx.user_for_post(&form).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let l = ctx.lang;
    let name = user.account.name.clone();
    let notice = match form.get("action") {
        Some("issue") => {
            let pw = crate::cli::generate_password();
            let Some(hash) = ctx.app().auth.hash(&pw).await else {
                return ctx.unavailable();
            };
            ctx.app().auth.forget(user.account.id);
            match ctx
                .app()
                .store
                .run(move |s| s.accounts.set_smtp_password(&name, Some(&hash)))
                .await
            {
                Ok(()) => {
                    user.account.smtp_password_hash = Some(String::new());
                    Notice::Good.html(&format!(
                        "<p>{}</p><p><span class=\"secret\">{}</span></p><p>{}</p>",
                        l.t(
                            "SMTP AUTH専用パスワードを発行しました:",
                            "Your new SMTP AUTH password:"
                        ),
                        esc(&pw),
                        l.t(
                            "このパスワードは今回しか表示されません。メールソフトの送信サーバーの認証設定に入力してください。",
                            "It is shown only this once. Enter it in the outgoing server authentication of your mail program.",
                        )
                    ))
                }
                Err(e) => return ctx.store_error(e),
            }
        }
        Some("revoke") => {
            if let Err(e) = ctx
                .app()
                .store
                .run(move |s| s.accounts.set_smtp_password(&name, None))
                .await
            {
                return ctx.store_error(e);
            }
            user.account.smtp_password_hash = None;
            Notice::Good.html(l.t(
                "SMTP AUTH専用パスワードを削除しました。送信時の認証には通常のパスワードを使います。",
                "The SMTP AUTH password was removed. Sending now authenticates with your account password.",
            ))
        }
        _ => {
            return render(
                &ctx,
                &user,
                StatusCode::BAD_REQUEST,
                &Notice::Bad.html(l.t("不明な操作です。", "Unknown action.")),
            )
            .await
        }
    };
    render(&ctx, &user, StatusCode::OK, &notice).await
}

fn tls_text(l: Lang, x: &Listener) -> &'static str {
    match x.tls_mode() {
        TlsMode::None => l.t("なし", "none"),
        TlsMode::Starttls => "STARTTLS",
        TlsMode::Implicit => "SSL/TLS",
    }
}

/// One row per server a customer configures: POP (with whether it opens
/// POP-before-SMTP), SMTP AUTH and POP-before-SMTP submission.
fn servers(l: Lang, cfg: &Config) -> String {
    let mut rows = String::new();
    for x in &cfg.listeners {
        let (role, note) = match x.protocol {
            Protocol::Pop3 => (
                l.t("受信 (POP3)", "Incoming (POP3)"),
                if x.grants_relay {
                    l.t(
                        "受信するとPOP before SMTPが有効になります",
                        "Opens POP-before-SMTP",
                    )
                } else {
                    l.t(
                        "POP before SMTPは有効になりません",
                        "Does not open POP-before-SMTP",
                    )
                },
            ),
            Protocol::Smtp if x.relay_by.contains(&RelayBy::Auth) => (
                l.t("送信 (SMTP AUTH)", "Outgoing (SMTP AUTH)"),
                l.t("送信時に認証が必要です", "Requires authentication"),
            ),
            Protocol::Smtp if x.relay_by.contains(&RelayBy::PopBeforeSmtp) => (
                l.t("送信 (POP before SMTP)", "Outgoing (POP-before-SMTP)"),
                l.t("受信してから送信します", "Send after checking mail"),
            ),
            _ => continue,
        };
        rows += &format!(
            r#"<tr><td data-label="{c1}">{role} <span class="tag">{name}</span></td><td class="mono" data-label="{c2}">{host}</td><td class="num" data-label="{c3}">{port}</td><td data-label="{c4}">{tls}</td><td class="muted">{note}</td></tr>"#,
            c1 = l.t("用途", "Use"),
            c2 = l.t("サーバー名", "Server"),
            c3 = l.t("ポート", "Port"),
            c4 = l.t("暗号化", "Encryption"),
            host = esc(&cfg.hostname),
            name = esc(&x.name),
            port = port_text(x.bind),
            tls = tls_text(l, x),
        );
    }
    format!(
        r#"<div class="scroll"><table class="responsive"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>"#,
        l.t("用途", "Use"),
        l.t("サーバー名", "Server"),
        l.t("ポート", "Port"),
        l.t("暗号化", "Encryption"),
    )
}

async fn render(ctx: &Ctx, user: &User, status: StatusCode, notice: &str) -> Response {
    let l = ctx.lang;
    let a = &user.account;
    let ip = ctx.ip;
    let grant = match ctx
        .app()
        .store
        .run(move |s| s.grants.active(ip, SystemTime::now()))
        .await
    {
        Ok(g) => g,
        Err(e) => return ctx.store_error(e),
    };
    let minutes = ctx.app().config.relay.pop_before_smtp_seconds.div_ceil(60);
    let grant_html = match grant {
        Some(g) => Notice::Good.html(&format!(
            "{} <strong>{}</strong> {}",
            esc(&match l {
                Lang::Ja => format!("このブラウザのIPアドレス {ip} は POP before SMTP で送信できます:"),
                Lang::En => format!("Your IP address {ip} may send with POP-before-SMTP until"),
            }),
            esc(&crate::cli::fmt_time(g.until)),
            l.t("まで", ""),
        )),
        None => Notice::Info.html(&esc(&match l {
            Lang::Ja => format!("このブラウザのIPアドレス {ip} には、現在 POP before SMTP の許可がありません。送信する前に、POP before SMTPが有効になる受信サーバーでメールを受信してください(新着がなくても構いません)。受信から約{minutes}分間送信できます。"),
            Lang::En => format!("Your IP address {ip} has no POP-before-SMTP grant right now. Check mail on a POP server that opens POP-before-SMTP (no new mail needed); you may then send for about {minutes} minutes."),
        })),
    };
    let csrf = csrf_field(&user.csrf);
    let smtp_state = if a.smtp_password_hash.is_some() {
        l.t(
            "SMTP AUTH専用パスワードが発行されています(送信時の認証にはこちらを使います)。",
            "A separate SMTP AUTH password is set (sending authenticates with it).",
        )
    } else {
        l.t(
            "SMTP AUTHでは通常のパスワードを使います。専用パスワードを発行することもできます。",
            "SMTP AUTH uses your account password. You can issue a separate one.",
        )
    };
    let revoke = if a.smtp_password_hash.is_some() {
        format!(
            r#"<button class="secondary" name="action" value="revoke" type="submit">{}</button>"#,
            l.t("専用パスワードを削除", "Remove it")
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<h1>{title}</h1>{notice}
<section class="card"><h2>{h_acct}</h2>
<table><tr><th>{l_name}</th><td class="mono">{name}</td></tr><tr><th>{l_addr}</th><td class="mono">{addr}</td></tr>
<tr><th>{l_smtpuser}</th><td class="mono">{name}</td></tr></table>
<p class="muted">{login_note}</p></section>
<section class="card"><h2>{h_srv}</h2>{servers}</section>
<section class="card"><h2>POP before SMTP</h2>{grant_html}</section>
<section class="card"><h2>{h_pw}</h2>
<form method="post" action="/settings/password" class="stack">{csrf}
<label>{l_cur}<input type="password" name="current" autocomplete="current-password" required maxlength="1024"></label>
<label>{l_new}<input type="password" name="new" autocomplete="new-password" required minlength="8" maxlength="256"></label>
<label>{l_new2}<input type="password" name="new2" autocomplete="new-password" required minlength="8" maxlength="256"></label>
<div><button type="submit">{b_pw}</button></div></form></section>
<section class="card"><h2>{h_smtp}</h2><p>{smtp_state}</p>
<form method="post" action="/settings/smtp-password" class="actions">{csrf}
<button name="action" value="issue" type="submit">{b_issue}</button>{revoke}</form></section>"#,
        title = l.t("設定の確認", "My settings"),
        h_acct = l.t("アカウント", "Account"),
        l_name = l.t("アカウント名", "Account name"),
        l_addr = l.t("メールアドレス", "Mail address"),
        l_smtpuser = l.t("SMTP AUTHユーザー名", "SMTP AUTH user name"),
        name = esc(&a.name),
        addr = esc(&a.address),
        login_note = l.t(
            "アカウント名の代わりにメールアドレスでもログインできます(一部のメールソフトではメールアドレスを指定します)。",
            "Your mail address works as the user name too (some mail programs need it).",
        ),
        h_srv = l.t("メールソフトに設定するサーバー", "Servers for your mail program"),
        servers = servers(l, &ctx.app().config),
        h_pw = l.t("パスワードの変更", "Change password"),
        l_cur = l.t("現在のパスワード", "Current password"),
        l_new = l.t("新しいパスワード(8文字以上)", "New password (8 characters or more)"),
        l_new2 = l.t("新しいパスワード(確認)", "New password again"),
        b_pw = l.t("変更する", "Change"),
        h_smtp = l.t("SMTP AUTH専用パスワード", "SMTP AUTH password"),
        b_issue = l.t("新しく発行する", "Issue a new one"),
    );
    (status, page(ctx, l.t("設定の確認", "My settings"), &body)).into_response()
}
