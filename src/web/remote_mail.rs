//! Remote mail (SEED-17, seed J5): list the messages on the server, read a
//! message's header, and delete chosen ones without downloading them. Only
//! the header block of each file is read (bounded), never a whole message.
//! Deleting takes the POP lock (SEED-6) so it never races a POP session.

use super::form::Form;
use super::layout::{csrf_field, esc, page, Notice};
use super::session::{Ctx, User};
use super::Lang;
use crate::store::{MessageInfo, Store};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mail_parser::{HeaderName, MessageParser};
use std::io::Read;
use std::time::Duration;

const PAGE_SIZE: usize = 25;
/// The header block is read up to this many octets.
const MAX_HEADER: usize = 64 * 1024;
/// The web's hold on the POP lock while it deletes.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// What the list shows of one message.
struct Summary {
    info: MessageInfo,
    from: String,
    subject: String,
    date: String,
    attachment: bool,
}

/// Reads the header block of a message: up to the first empty line, at most
/// `MAX_HEADER` octets.
fn read_header(store: &Store, account: &crate::store::Account, m: &MessageInfo) -> Vec<u8> {
    let Ok(mut r) = store.mail.open(account, m) else {
        return Vec::new();
    };
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    while buf.len() < MAX_HEADER {
        let want = chunk.len().min(MAX_HEADER - buf.len());
        match r.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = find_blank_line(&buf[from..]) {
                    buf.truncate(from + p);
                    break;
                }
            }
        }
    }
    buf
}

/// The offset just past the CRLF CRLF (or LF LF) that ends the header.
fn find_blank_line(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

fn summarize(info: MessageInfo, header: &[u8]) -> Summary {
    let parsed = MessageParser::default().parse_headers(header);
    let (mut from, mut subject, mut date, mut attachment) =
        (String::new(), String::new(), String::new(), false);
    if let Some(m) = parsed {
        from = m
            .from()
            .and_then(|a| a.first())
            .map(|a| match (a.name(), a.address()) {
                (Some(n), Some(ad)) => format!("{n} <{ad}>"),
                (Some(n), None) => n.to_string(),
                (None, Some(ad)) => ad.to_string(),
                (None, None) => String::new(),
            })
            .unwrap_or_default();
        subject = m.subject().unwrap_or_default().to_string();
        date = m
            .date()
            .map(|d| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}",
                    d.year, d.month, d.day, d.hour, d.minute
                )
            })
            .unwrap_or_default();
        attachment = m
            .header(HeaderName::ContentType)
            .and_then(|v| v.as_content_type())
            .is_some_and(|ct| {
                let (t, sub) = (ct.ctype(), ct.subtype().unwrap_or(""));
                (t.eq_ignore_ascii_case("multipart") && sub.eq_ignore_ascii_case("mixed"))
                    || !(t.eq_ignore_ascii_case("text") || t.eq_ignore_ascii_case("multipart"))
            });
    }
    if date.is_empty() {
        date = crate::cli::fmt_time(info.received);
    }
    Summary {
        info,
        from,
        subject,
        date,
        attachment,
    }
}

pub fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.0} KB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The IN-USE explanation (seed J4) for a mailbox a POP session holds.
fn in_use_notice(l: Lang, since: &str) -> String {
    Notice::Warn.html(&format!(
        "<p><strong>{}</strong></p><p>{}</p>",
        esc(&match l {
            Lang::Ja => format!("メールソフトが受信中です({since}から)。"),
            Lang::En => format!("A mail program is checking this mailbox (since {since})."),
        }),
        l.t(
            "受信中はメールボックスがロックされているため、ここから削除できません(メールソフトに「-ERR [IN-USE] … lock busy! Is another session active?」と表示される状態と同じです)。betomailではメールソフトが受信を終えるか接続が切れた時点ですぐにロックが解除されます。メールソフトを終了するか、自動受信を止めてから、もう一度お試しください。",
            "While it does, the mailbox is locked and cannot be changed from here (the same situation as the \"-ERR [IN-USE] ... lock busy! Is another session active?\" message). betomail frees the lock the moment the mail program finishes or disconnects. Close the mail program or stop its automatic checking, then try again.",
        )
    ))
}

async fn lock_holder(ctx: &Ctx, user: &User) -> Result<Option<String>, Response> {
    let name = user.account.name.clone();
    match ctx.app().store.run(move |s| s.locks.holder(&name)).await {
        Ok(h) => Ok(h.map(|h| crate::cli::fmt_time(h.acquired))),
        Err(e) => Err(ctx.store_error(e)),
    }
}

pub async fn list(ctx: Ctx) -> Response {
    let user = match ctx.user().await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = Form::from_query(ctx.query.as_deref());
    let page_no: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1 && *p <= 1_000_000)
        .unwrap_or(1);
    let notice = match q.get("deleted").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => Notice::Good.html(&esc(&match ctx.lang {
            Lang::Ja => format!("{n}通のメールを削除しました。"),
            Lang::En => format!("Deleted {n} message(s)."),
        })),
        None => String::new(),
    };
    render_list(&ctx, &user, page_no, StatusCode::OK, notice).await
}

async fn render_list(
    ctx: &Ctx,
    user: &User,
    page_no: usize,
    status: StatusCode,
    mut notice: String,
) -> Response {
    let l = ctx.lang;
    let account = user.account.clone();
    let listed = ctx
        .app()
        .store
        .run(move |s| {
            let mut all = s.mail.list(&account)?;
            all.reverse(); // newest first
            let total = all.len();
            let bytes: u64 = all.iter().map(|m| m.size).sum();
            let start = (page_no - 1).saturating_mul(PAGE_SIZE).min(total);
            let end = (start + PAGE_SIZE).min(total);
            let page: Vec<Summary> = all[start..end]
                .iter()
                .map(|m| summarize(m.clone(), &read_header(s, &account, m)))
                .collect();
            Ok((total, bytes, page))
        })
        .await;
    let (total, bytes, msgs) = match listed {
        Ok(x) => x,
        Err(e) => return ctx.store_error(e),
    };
    if let Some(since) = match lock_holder(ctx, user).await {
        Ok(h) => h,
        Err(r) => return r,
    } {
        notice += &in_use_notice(l, &since);
    }
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let rows: String = msgs
        .iter()
        .map(|m| {
            let uid = esc(&m.info.uid);
            format!(
                r#"<tr><td><input type="checkbox" name="uid" value="{uid}" aria-label="{sel}"></td><td data-label="{c_from}">{from}</td><td class="subj" data-label="{c_subj}"><a href="/mail/view?uid={uid_q}">{subj}</a>{att}</td><td data-label="{c_date}">{date}</td><td class="num" data-label="{c_size}">{size}</td></tr>"#,
                sel = l.t("選択", "select"),
                c_from = l.t("差出人", "From"),
                c_subj = l.t("件名", "Subject"),
                c_date = l.t("日付", "Date"),
                c_size = l.t("サイズ", "Size"),
                uid_q = esc(&form_urlencoded::byte_serialize(m.info.uid.as_bytes()).collect::<String>()),
                from = esc(&m.from),
                subj = if m.subject.is_empty() {
                    format!("<span class=\"muted\">{}</span>", l.t("(件名なし)", "(no subject)"))
                } else {
                    esc(&m.subject)
                },
                att = if m.attachment {
                    format!(r#" <span class="tag">{}</span>"#, l.t("添付", "attachment"))
                } else {
                    String::new()
                },
                date = esc(&m.date),
                size = human_size(m.info.size),
            )
        })
        .collect();
    let table = if total == 0 {
        format!(
            r#"<p class="muted">{}</p>"#,
            l.t(
                "サーバーにメールはありません。",
                "There is no mail on the server."
            )
        )
    } else {
        format!(
            r#"<form method="post" action="/mail/delete">{csrf}<input type="hidden" name="page" value="{page_no}">
<div class="scroll"><table class="responsive"><thead><tr><th></th><th>{c_from}</th><th>{c_subj}</th><th>{c_date}</th><th>{c_size}</th></tr></thead><tbody>{rows}</tbody></table></div>
<div class="actions"><button class="danger" type="submit">{del}</button><span class="muted">{warn}</span></div></form>"#,
            csrf = csrf_field(&user.csrf),
            c_from = l.t("差出人", "From"),
            c_subj = l.t("件名", "Subject"),
            c_date = l.t("日付", "Date"),
            c_size = l.t("サイズ", "Size"),
            del = l.t("選択したメールを削除", "Delete selected"),
            warn = l.t(
                "削除したメールは元に戻せません。",
                "Deleted mail cannot be recovered."
            ),
        )
    };
    let mut pager = String::new();
    if pages > 1 {
        if page_no > 1 {
            pager += &format!(
                r#"<a href="/mail?page={}">← {}</a>"#,
                page_no - 1,
                l.t("前へ", "Newer")
            );
        }
        pager += &format!(r#"<span class="muted">{page_no} / {pages}</span>"#);
        if page_no < pages {
            pager += &format!(
                r#"<a href="/mail?page={}">{} →</a>"#,
                page_no + 1,
                l.t("次へ", "Older")
            );
        }
        pager = format!(r#"<div class="pager">{pager}</div>"#);
    }
    let body = format!(
        r#"<h1>{title}</h1>{notice}<section class="card"><p class="muted">{intro}</p><p>{count}</p>{table}{pager}</section>"#,
        title = l.t("リモートメール", "Remote mail"),
        intro = l.t(
            "サーバーにあるメールを、受信せずに直接削除できます。大きな添付ファイル付きのメールなどで、メールソフトの受信が止まってしまうときにお使いください。",
            "Delete mail right on the server without downloading it: for example the one huge attachment that makes your mail program freeze.",
        ),
        count = esc(&match l {
            Lang::Ja => format!("{total}通 / 合計 {}", human_size(bytes)),
            Lang::En => format!("{total} message(s), {} in all", human_size(bytes)),
        }),
    );
    (
        status,
        page(ctx, l.t("リモートメール", "Remote mail"), &body),
    )
        .into_response()
}

pub async fn view(ctx: Ctx) -> Response {
    let user = match ctx.user().await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let l = ctx.lang;
    let q = Form::from_query(ctx.query.as_deref());
    let uid = q.get("uid").unwrap_or("").to_string();
    let account = user.account.clone();
    let found = ctx
        .app()
        .store
        .run(move |s| {
            let m = s.mail.list(&account)?.into_iter().find(|m| m.uid == uid);
            Ok(m.map(|m| {
                let h = read_header(s, &account, &m);
                (summarize(m, &h), h)
            }))
        })
        .await;
    let (m, header) = match found {
        Ok(Some(x)) => x,
        Ok(None) => {
            return ctx.error_page(
                StatusCode::NOT_FOUND,
                l.t(
                    "そのメールはサーバーにありません(すでに受信または削除されています)。",
                    "That message is not on the server (already downloaded or deleted).",
                ),
            )
        }
        Err(e) => return ctx.store_error(e),
    };
    let body = format!(
        r#"<h1>{title}</h1><section class="card"><table>
<tr><th>{c_from}</th><td>{from}</td></tr><tr><th>{c_subj}</th><td class="subj">{subj}</td></tr>
<tr><th>{c_date}</th><td>{date}</td></tr><tr><th>{c_size}</th><td>{size}</td></tr></table>
<h2>{c_head}</h2><pre>{header}</pre>
<form method="post" action="/mail/delete" class="actions">{csrf}<input type="hidden" name="uid" value="{uid}">
<button class="danger" type="submit">{del}</button><a href="/mail">{back}</a></form></section>"#,
        title = l.t("メールのヘッダー", "Message header"),
        c_from = l.t("差出人", "From"),
        c_subj = l.t("件名", "Subject"),
        c_date = l.t("日付", "Date"),
        c_size = l.t("サイズ", "Size"),
        c_head = l.t("ヘッダー全体", "Full header"),
        from = esc(&m.from),
        subj = esc(&m.subject),
        date = esc(&m.date),
        size = esc(&format!(
            "{} ({} octets)",
            human_size(m.info.size),
            m.info.size
        )),
        header = esc(&String::from_utf8_lossy(&header)),
        csrf = csrf_field(&user.csrf),
        uid = esc(&m.info.uid),
        del = l.t("このメールを削除", "Delete this message"),
        back = l.t("一覧へ戻る", "Back to the list"),
    );
    page(&ctx, l.t("メールのヘッダー", "Message header"), &body).into_response()
}

/// What a delete attempt came to.
enum Deleted {
    Done(usize),
    InUse(String),
}

pub async fn delete(ctx: Ctx, body: Bytes) -> Response {
    let form = Form::from_body(&body);
    let user = match ctx.user_for_post(&form).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let uids: Vec<String> = form.all("uid").into_iter().map(str::to_string).collect();
    let page_no = form
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p: &usize| *p >= 1 && *p <= 1_000_000)
        .unwrap_or(1);
    if uids.is_empty() {
        let n = Notice::Info.html(ctx.lang.t(
            "削除するメールを選んでください。",
            "Choose the messages to delete.",
        ));
        return render_list(&ctx, &user, page_no, StatusCode::BAD_REQUEST, n).await;
    }
    let account = user.account.clone();
    let owner = format!(
        "{}/web/{}",
        ctx.app().node,
        hex::encode(rand::random::<[u8; 8]>())
    );
    let peer = Some(ctx.ip);
    let result = ctx
        .app()
        .store
        .run(move |s| {
            if !s.locks.try_lock(&account.name, &owner, peer, LOCK_TTL)? {
                let since = s
                    .locks
                    .holder(&account.name)?
                    .map(|h| crate::cli::fmt_time(h.acquired))
                    .unwrap_or_default();
                return Ok(Deleted::InUse(since));
            }
            let done = s.mail.list(&account).and_then(|all| {
                let chosen: Vec<MessageInfo> =
                    all.into_iter().filter(|m| uids.contains(&m.uid)).collect();
                s.mail.delete(&account, &chosen).map(|()| chosen.len())
            });
            let released = s.locks.release(&account.name, &owner);
            let n = done?;
            released?;
            Ok(Deleted::Done(n))
        })
        .await;
    match result {
        Ok(Deleted::Done(n)) => {
            tracing::info!(account = %user.account.name, deleted = n, "remote mail delete");
            Redirect::to(&format!("/mail?page={page_no}&deleted={n}")).into_response()
        }
        Ok(Deleted::InUse(since)) => {
            let n = in_use_notice(ctx.lang, &since);
            render_list(&ctx, &user, page_no, StatusCode::CONFLICT, n).await
        }
        Err(e) => ctx.store_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn info() -> MessageInfo {
        MessageInfo {
            uid: "u1".into(),
            size: 10,
            received: SystemTime::UNIX_EPOCH,
            locator: String::new(),
        }
    }

    #[test]
    fn header_block_end() {
        assert_eq!(find_blank_line(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(find_blank_line(b"A: b\n\nbody"), Some(6));
        assert_eq!(find_blank_line(b"A: b\r\nB: c\r\n"), None);
    }

    #[test]
    fn summary_of_mime_headers() {
        let h = b"From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\r\nSubject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\nDate: Tue, 1 Oct 2002 10:00:00 +0900\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n";
        let s = summarize(info(), h);
        assert_eq!(s.from, "山田 <yamada@example.jp>");
        assert_eq!(s.subject, "テスト");
        assert_eq!(s.date, "2002-10-01 10:00");
        assert!(s.attachment);
        let s = summarize(info(), b"Subject: hi\r\nContent-Type: text/plain\r\n\r\n");
        assert!(!s.attachment);
        let s = summarize(info(), b"\x00\xff garbage");
        assert_eq!(s.subject, "");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(500), "500 B");
        assert_eq!(human_size(20 << 20), "20.0 MB");
    }
}
