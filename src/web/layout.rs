//! The page frame (header, navigation, language switch, footer), the one
//! stylesheet, HTML escaping, and the home and 404 pages.

use super::session::Ctx;
use super::Lang;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A coloured message box.
#[derive(Clone, Copy)]
pub enum Notice {
    Good,
    Warn,
    Bad,
    Info,
}

impl Notice {
    /// `html` must already be escaped.
    pub fn html(self, html: &str) -> String {
        let class = match self {
            Notice::Good => "good",
            Notice::Warn => "warn",
            Notice::Bad => "bad",
            Notice::Info => "info",
        };
        format!(r#"<div class="notice {class}" role="status">{html}</div>"#)
    }
}

/// A listener's port for customers; a configured port 0 (chosen by the
/// system at start) is not something to type into a mail program.
pub fn port_text(bind: std::net::SocketAddr) -> String {
    match bind.port() {
        0 => "—".to_string(),
        p => p.to_string(),
    }
}

/// A hidden CSRF field for a form of the logged-in user.
pub fn csrf_field(token: &str) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(token)
    )
}

/// The whole document around `body` (already escaped HTML).
pub fn page(ctx: &Ctx, title: &str, body: &str) -> Html<String> {
    let l = ctx.lang;
    let mut nav = vec![
        ("/dns-check", l.t("DNSチェック", "DNS check")),
        ("/faq", l.t("よくある質問", "FAQ")),
    ];
    if ctx.logged_in() {
        nav.push(("/mail", l.t("リモートメール", "Remote mail")));
        nav.push(("/settings", l.t("設定", "Settings")));
    }
    if ctx.session.as_ref().is_some_and(|(_, s)| s.admin) {
        nav.push(("/admin", l.t("運用管理", "Operator")));
    }
    let links: String = nav
        .iter()
        .map(|(href, label)| format!(r#"<a href="{href}">{label}</a>"#))
        .collect();
    let account = if ctx.logged_in() {
        format!(
            r#"<form method="post" action="/logout" class="inline">{}<button class="link" type="submit">{}</button></form>"#,
            csrf_field(ctx.csrf()),
            l.t("ログアウト", "Log out")
        )
    } else {
        format!(r#"<a href="/login">{}</a>"#, l.t("ログイン", "Log in"))
    };
    let (other, name) = match l {
        Lang::Ja => (Lang::En, "English"),
        Lang::En => (Lang::Ja, "日本語"),
    };
    let switch = format!(
        r#"<a href="{}" hreflang="{code}" lang="{code}">{name}</a>"#,
        esc(&lang_switch_href(ctx, other)),
        code = other.code(),
    );
    Html(format!(
        r#"<!doctype html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · betomail</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header class="top"><div class="wrap">
<a class="brand" href="/"><span class="logo">b</span>betomail <small>{support}</small></a>
<nav>{links}{account}<span class="lang">{switch}</span></nav>
</div></header>
<main class="wrap">
{body}
</main>
<footer class="wrap muted">{footer}</footer>
</body>
</html>
"#,
        code = l.code(),
        title = esc(title),
        support = l.t("サポート", "Support"),
        footer = esc(&ctx.app().config.hostname),
    ))
}

/// This page in `lang`: the same address with its other query parameters
/// kept (a relative `?...` link, so no path from the request is echoed), or
/// the form's page for the answer to a POST.
fn lang_switch_href(ctx: &Ctx, lang: Lang) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if ctx.form_page.is_none() {
        let kept = form_urlencoded::parse(ctx.query.as_deref().unwrap_or("").as_bytes());
        query.extend_pairs(kept.filter(|(k, _)| k != "lang"));
    }
    query.append_pair("lang", lang.code());
    format!("{}?{}", ctx.form_page.unwrap_or(""), query.finish())
}

pub async fn home(ctx: Ctx) -> Response {
    let l = ctx.lang;
    let card = |href: &str, title: &str, text: &str| {
        format!(r#"<a class="card tile" href="{href}"><h2>{title}</h2><p>{text}</p></a>"#)
    };
    let body = format!(
        r#"<section class="hero"><h1>{h}</h1><p>{p}</p></section>
<div class="grid">{a}{b}{c}{d}</div>"#,
        h = l.t("メールサポート", "Mail support"),
        p = l.t(
            "メールの受信・送信でお困りのときは、まずこちらをご確認ください。",
            "Trouble sending or receiving mail? Start here.",
        ),
        a = card(
            "/dns-check",
            l.t("DNSチェック", "DNS check"),
            l.t(
                "お使いの回線の正引き・逆引きが一致しているか調べます。",
                "Check whether your connection's forward and reverse DNS match.",
            )
        ),
        b = card(
            "/mail",
            l.t("リモートメール", "Remote mail"),
            l.t(
                "受信できない大きなメールをサーバー上で直接削除します。",
                "Delete a mail that jams your mail program, right on the server.",
            )
        ),
        c = card(
            "/settings",
            l.t("設定の確認", "My settings"),
            l.t(
                "サーバー名・ポート、パスワード変更、SMTP AUTH。",
                "Server names and ports, password, SMTP AUTH.",
            )
        ),
        d = card(
            "/faq",
            l.t("よくある質問", "FAQ"),
            l.t(
                "エラーメッセージの意味と対処法。",
                "What error messages mean and what to do.",
            )
        ),
    );
    page(&ctx, l.t("メールサポート", "Mail support"), &body).into_response()
}

pub async fn not_found(ctx: Ctx) -> Response {
    let l = ctx.lang;
    let body = format!(
        r#"<section class="card narrow"><h1>404</h1><p>{}</p><p><a href="/">{}</a></p></section>"#,
        l.t(
            "お探しのページは見つかりませんでした。",
            "The page you asked for does not exist."
        ),
        l.t("トップへ戻る", "Back to the start page"),
    );
    (StatusCode::NOT_FOUND, page(&ctx, "404", &body)).into_response()
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        CSS,
    )
        .into_response()
}

const CSS: &str = r#"
:root{--bg:#f4f6f9;--card:#fff;--ink:#1d2733;--muted:#5d6b7a;--line:#dfe4ea;--brand:#0b6bcb;--brand-ink:#fff;
--good:#e7f6ec;--good-ink:#17663a;--warn:#fff6e0;--warn-ink:#7a5200;--bad:#fdecec;--bad-ink:#a01919;--info:#e8f1fb;--info-ink:#124a85}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:16px/1.6 system-ui,-apple-system,"Segoe UI","Hiragino Sans","Noto Sans CJK JP","Noto Sans JP",Meiryo,sans-serif}
a{color:var(--brand)}
.wrap{max-width:980px;margin:0 auto;padding:0 16px}
header.top{background:var(--card);border-bottom:1px solid var(--line)}
header.top .wrap{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:8px;padding-top:10px;padding-bottom:10px}
.brand{display:flex;align-items:center;gap:8px;font-weight:700;font-size:1.15rem;color:var(--ink);text-decoration:none}
.brand small{font-weight:400;color:var(--muted);font-size:.85rem}
.logo{display:inline-grid;place-items:center;width:30px;height:30px;border-radius:8px;background:var(--brand);color:var(--brand-ink);font-weight:800}
nav{display:flex;flex-wrap:wrap;align-items:center;gap:4px 14px;font-size:.95rem}
nav a{text-decoration:none}
nav a:hover{text-decoration:underline}
nav .lang a{border:1px solid var(--line);border-radius:999px;padding:2px 10px}
main.wrap{padding-top:24px;padding-bottom:24px}
footer.wrap{padding-bottom:24px;font-size:.85rem}
.card>p:first-child{margin-top:0}
h1{font-size:1.5rem;line-height:1.3;margin:0 0 12px}
h2{font-size:1.15rem;margin:20px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 20px;margin:0 0 16px;box-shadow:0 1px 2px rgba(20,30,40,.04)}
.card>h2:first-child{margin-top:0}
.narrow{max-width:460px;margin-left:auto;margin-right:auto}
.hero{padding:8px 0 12px}
.hero p{color:var(--muted);margin:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(210px,1fr));gap:14px}
.grid .card{margin:0}
.tile{display:block;color:var(--ink);text-decoration:none;transition:border-color .15s}
.tile:hover{border-color:var(--brand)}
.tile h2{margin:0 0 4px;color:var(--brand)}
.tile p{margin:0;color:var(--muted);font-size:.95rem}
.muted{color:var(--muted)}
.notice{border-radius:10px;padding:12px 14px;margin:0 0 14px}
.notice p{margin:.3em 0}
.good{background:var(--good);color:var(--good-ink)}
.warn{background:var(--warn);color:var(--warn-ink)}
.bad{background:var(--bad);color:var(--bad-ink)}
.info{background:var(--info);color:var(--info-ink)}
.verdict{font-size:1.2rem;font-weight:700}
.big{font-size:1.6rem;font-weight:700;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
table{width:100%;border-collapse:collapse;font-size:.95rem}
th,td{text-align:left;padding:8px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:.85rem}
td.num{text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}
code,pre,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
code{background:#eef1f5;border-radius:4px;padding:1px 4px;word-break:break-all}
pre{background:#f7f9fb;border:1px solid var(--line);border-radius:8px;padding:10px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
form.stack{display:grid;gap:12px}
form.row{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end}
form.inline{display:inline;margin:0}
label{display:grid;gap:4px;font-weight:600;font-size:.92rem}
label.check{display:flex;align-items:center;gap:6px;font-weight:400}
input[type=text],input[type=password],input:not([type]),select{font:inherit;padding:9px 11px;border:1px solid #c5ced8;border-radius:8px;background:#fff;min-width:0;width:100%}
form.row input{width:auto;flex:1 1 180px}
input:focus{outline:2px solid var(--brand);outline-offset:1px}
button{font:inherit;font-weight:600;border:0;border-radius:8px;padding:9px 16px;background:var(--brand);color:var(--brand-ink);cursor:pointer}
button.secondary{background:#e9eef4;color:var(--ink)}
button.danger{background:#c62828}
button.link{background:none;color:var(--brand);padding:0;font-weight:400}
button.small{padding:4px 10px;font-size:.85rem}
.actions{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-top:12px}
.pager{display:flex;gap:12px;align-items:center;margin-top:12px}
.tag{display:inline-block;border-radius:999px;padding:0 8px;font-size:.8rem;background:#eef1f5;color:var(--muted)}
.tag.on{background:var(--good);color:var(--good-ink)}
.tag.off{background:var(--bad);color:var(--bad-ink)}
.secret{font-size:1.3rem;font-family:ui-monospace,Menlo,Consolas,monospace;background:#fff;border:1px dashed var(--good-ink);padding:6px 10px;border-radius:8px;display:inline-block;user-select:all}
.faq dt{font-weight:700;margin-top:18px}
.faq dd{margin:6px 0 0}
.faq .entry{scroll-margin-top:12px}
.faq .entry:target{outline:2px solid var(--brand);outline-offset:4px;border-radius:12px}
.toc{columns:2 260px;padding-left:18px}
.subj{font-weight:600;word-break:break-word}
@media (max-width:640px){
 body{font-size:15px}
 h1{font-size:1.3rem}
 .card{padding:14px;border-radius:10px}
 table.responsive thead{display:none}
 table.responsive tr{display:block;border-bottom:1px solid var(--line);padding:8px 0}
 table.responsive td{display:block;border:0;padding:2px 0}
 table.responsive td.num{text-align:left}
 table.responsive td[data-label]::before{content:attr(data-label) ": ";color:var(--muted);font-size:.85rem}
}
"#;
