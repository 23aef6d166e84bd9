//! The public DNS self-check (SEED-16, seed Q2): the visitor's IP, its PTR
//! names and their forward addresses, and what each POP listener would do
//! with it (SEED-8), in plain words and with what to ask the provider.
//! `GET /api/dns-check` gives the same as JSON (SPEC interface).

use super::form::Form;
use super::layout::{esc, page, Notice};
use super::session::Ctx;
use super::{json_error, Lang};
use crate::config::Protocol;
use crate::dns::{api_json, decide, refused_by_pop3, Decision, FcrdnsReport, Verdict};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::IpAddr;

/// `1.2.3.4`, `2001:db8::1` or `[2001:db8::1]`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

pub async fn api(ctx: Ctx) -> Response {
    let q = Form::from_query(ctx.query.as_deref());
    let ip = match q.get("ip") {
        None => ctx.ip,
        Some(s) => match parse_ip(s) {
            Some(ip) => ip,
            None => {
                return json_error(StatusCode::BAD_REQUEST, "ip is not an IPv4 or IPv6 address")
            }
        },
    };
    let report = ctx.app().dns.fcrdns(ip).await;
    let refused = refused_by_pop3(&ctx.app().config, &report);
    Json(api_json(&report, refused)).into_response()
}

pub async fn page_handler(ctx: Ctx) -> Response {
    let l = ctx.lang;
    let q = Form::from_query(ctx.query.as_deref());
    let asked = q.get("ip").map(str::to_string);
    let title = l.t(
        "DNSチェック(正引き・逆引き)",
        "DNS check (forward and reverse)",
    );
    let (ip, own) = match asked.as_deref().map(|s| (s, parse_ip(s))) {
        None => (ctx.ip, true),
        Some((_, Some(ip))) => (ip, ip == ctx.ip),
        Some((s, None)) => {
            let body = format!(
                "<h1>{title}</h1>{}{}",
                Notice::Bad.html(&format!(
                    "{} <code>{}</code>",
                    l.t(
                        "IPアドレスの形式が正しくありません:",
                        "That is not an IP address:"
                    ),
                    esc(s)
                )),
                other_form(l, s)
            );
            return (StatusCode::BAD_REQUEST, page(&ctx, title, &body)).into_response();
        }
    };
    let report = ctx.app().dns.fcrdns(ip).await;
    let body = format!(
        "<h1>{title}</h1>{}{}{}{}{}",
        address_card(&ctx, ip, own),
        verdict_card(&ctx, &report),
        names_card(l, &report),
        listeners_card(&ctx, &report),
        other_form(l, asked.as_deref().unwrap_or("")),
    );
    page(&ctx, title, &body).into_response()
}

fn address_card(ctx: &Ctx, ip: IpAddr, own: bool) -> String {
    let l = ctx.lang;
    let label = if own {
        l.t(
            "このページを見ているコンピュータのIPアドレス",
            "The IP address of the computer viewing this page",
        )
    } else {
        l.t("調べたIPアドレス", "The IP address checked")
    };
    let mut notes = String::new();
    if own {
        notes += &format!(
            "<p class=\"muted\">{}</p>",
            l.t(
                "このチェックは、ウェブブラウザがこのサーバーに接続してきたIPアドレスで診断しています。プロキシサーバーやVPNを使っている場合、またメールソフトが別の回線(会社のネットワーク、スマートフォンの回線など)を使う場合は、メールソフトが接続するIPアドレスと異なり、実際の結果と違うことがあります。",
                "This check uses the IP address your web browser connected from. If you use a proxy or VPN, or your mail program uses another connection (an office network, a phone's mobile data), the address your mail program uses may differ and so may the result.",
            )
        );
        if ctx.forwarded {
            notes += &Notice::Info.html(l.t(
                "この住所は、社内のプロキシサーバーが伝えたもの(X-Forwarded-For)です。",
                "This address was reported by our own proxy server (X-Forwarded-For).",
            ));
        }
    }
    format!(
        r#"<section class="card"><div class="muted">{label}</div><div class="big">{ip}</div>{notes}</section>"#,
        ip = esc(&ip.to_string()),
    )
}

/// The reason in plain words, in the page's language.
fn reason(l: Lang, r: &FcrdnsReport) -> String {
    let ip = r.ip.to_string();
    let names = r.ptr.join(", ");
    match l {
        Lang::En => {
            let mut s = r.reason();
            if let Some(first) = s.get(..1) {
                s = first.to_ascii_uppercase() + &s[1..];
            }
            s + "."
        }
        Lang::Ja => match r.verdict {
            Verdict::Pass => format!(
                "{ip} の逆引き名 {names} を正引きすると {ip} に戻ります。正引きと逆引きが一致しています。"
            ),
            Verdict::NoPtr => format!("{ip} には逆引き(PTR)が登録されていません。"),
            Verdict::Mismatch => format!(
                "{ip} の逆引き名は {names} ですが、その名前を正引きしても {ip} になりません。正引きと逆引きが一致していません。"
            ),
            Verdict::NoForward => format!(
                "{ip} の逆引き名は {names} ですが、その名前の正引き(A/AAAAレコード)が登録されていません。"
            ),
            Verdict::Temperror => format!(
                "{ip} のDNSの問い合わせが一時的に失敗しました(タイムアウトまたはDNSサーバーのエラー)。しばらくしてからもう一度お試しください。"
            ),
        },
    }
}

fn verdict_card(ctx: &Ctx, r: &FcrdnsReport) -> String {
    let l = ctx.lang;
    let refused = refused_by_pop3(&ctx.app().config, r);
    let (kind, headline) = match (r.verdict, refused) {
        (Verdict::Pass, _) => (Notice::Good, l.t("問題ありません", "All good")),
        (Verdict::Temperror, false) => (
            Notice::Warn,
            l.t("DNSを確認できませんでした", "DNS could not be checked"),
        ),
        (Verdict::NoPtr, false) => (
            Notice::Info,
            l.t(
                "逆引きはありませんが、受信できます",
                "No reverse DNS, but you can receive mail",
            ),
        ),
        (_, true) => (
            Notice::Bad,
            l.t(
                "POPサーバーに接続を拒否されます",
                "The POP servers refuse this address",
            ),
        ),
        (_, false) => (Notice::Warn, l.t("注意", "Attention")),
    };
    let mut html = format!(
        r#"<p class="verdict">{}</p><p>{}</p>"#,
        esc(headline),
        esc(&reason(l, r))
    );
    if let Some(ask) = ask_provider(l, r, refused) {
        html += &format!(
            "<p>{}</p><p><strong>「{}」</strong></p>",
            l.t(
                "ご利用の接続プロバイダのサポートへ、次のようにお伝えください。",
                "Please ask the support of your Internet provider:",
            ),
            esc(&ask)
        );
    }
    format!(r#"<section>{}</section>"#, kind.html(&html))
}

fn ask_provider(l: Lang, r: &FcrdnsReport, refused: bool) -> Option<String> {
    match r.verdict {
        Verdict::Mismatch | Verdict::NoForward => Some(
            l.t(
                "DNSの正引きと逆引きが一致していないので、修正してほしい。",
                "The forward and reverse DNS of my IP address do not match; please fix them.",
            )
            .to_string(),
        ),
        Verdict::NoPtr if refused => Some(match l {
            Lang::Ja => format!("IPアドレス {} の逆引き(PTR)を登録してほしい。", r.ip),
            Lang::En => format!(
                "Please register reverse DNS (PTR) for my IP address {}.",
                r.ip
            ),
        }),
        _ => None,
    }
}

fn names_card(l: Lang, r: &FcrdnsReport) -> String {
    if r.ptr.is_empty() {
        return format!(
            r#"<section class="card"><h2>{}</h2><p class="muted">{}</p></section>"#,
            l.t("逆引き(PTR)と正引き", "Reverse (PTR) and forward DNS"),
            l.t(
                "逆引きの名前はありません。",
                "There is no reverse DNS name."
            ),
        );
    }
    let rows: String = r
        .ptr
        .iter()
        .map(|name| {
            let (addrs, ok) = match r.forward.get(name) {
                None => (l.t("(未確認)", "(not looked up)").to_string(), false),
                Some(a) if a.is_empty() => (
                    l.t("(正引きなし)", "(no A/AAAA record)").to_string(),
                    false,
                ),
                Some(a) => (
                    a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
                    a.contains(&r.ip),
                ),
            };
            let tag = if ok {
                format!(r#"<span class="tag on">{}</span>"#, l.t("一致", "match"))
            } else {
                format!(r#"<span class="tag off">{}</span>"#, l.t("不一致", "no match"))
            };
            format!(
                r#"<tr><td class="mono" data-label="PTR">{}</td><td class="mono" data-label="A/AAAA">{}</td><td>{tag}</td></tr>"#,
                esc(name),
                esc(&addrs)
            )
        })
        .collect();
    format!(
        r#"<section class="card"><h2>{h}</h2><div class="scroll"><table class="responsive"><thead><tr><th>{c1}</th><th>{c2}</th><th></th></tr></thead><tbody>{rows}</tbody></table></div></section>"#,
        h = l.t("逆引き(PTR)と正引き", "Reverse (PTR) and forward DNS"),
        c1 = l.t("逆引きの名前", "Reverse name"),
        c2 = l.t("その名前の正引き", "Its forward addresses"),
    )
}

fn listeners_card(ctx: &Ctx, r: &FcrdnsReport) -> String {
    let l = ctx.lang;
    let cfg = &ctx.app().config;
    let rows: String = cfg
        .listeners
        .iter()
        .filter(|x| x.protocol == Protocol::Pop3)
        .map(|x| {
            let (class, text) = match decide(r, x.fcrdns_mode(), x.on_dns_error) {
                Decision::Allow => ("on", l.t("接続できます", "allowed")),
                Decision::Refuse => ("off", l.t("接続を拒否します", "refused")),
                Decision::TempFail => (
                    "off",
                    l.t("一時的に拒否します(DNSエラー)", "refused for now (DNS error)"),
                ),
            };
            format!(
                r#"<tr><td data-label="{sl}">{name}</td><td class="mono" data-label="{pl}">{host}{port}</td><td><span class="tag {class}">{text}</span></td></tr>"#,
                sl = l.t("サーバー", "Server"),
                pl = l.t("接続先", "Address"),
                name = esc(&x.name),
                host = esc(&cfg.hostname),
                port = match x.bind.port() {
                    0 => String::new(),
                    p => format!(":{p}"),
                },
            )
        })
        .collect();
    format!(
        r#"<section class="card"><h2>{h}</h2><div class="scroll"><table class="responsive"><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th></tr></thead><tbody>{rows}</tbody></table></div><p class="muted">{note} <a href="/faq#Q2">FAQ Q2</a></p></section>"#,
        h = l.t("受信(POP)サーバーの判定", "What the POP servers do"),
        c1 = l.t("サーバー", "Server"),
        c2 = l.t("接続先", "Address"),
        c3 = l.t("判定", "Result"),
        note = l.t(
            "正引きと逆引きが一致しないホスト、逆引きがあって正引きのないホストからの接続は拒否されます。",
            "Hosts whose forward and reverse DNS do not match, and hosts with a reverse name that has no forward record, are refused.",
        ),
    )
}

fn other_form(l: Lang, value: &str) -> String {
    format!(
        r#"<section class="card"><h2>{h}</h2><form method="get" action="/dns-check" class="row"><input name="ip" value="{v}" maxlength="64" placeholder="203.0.113.5 / 2001:db8::5" aria-label="IP"><button type="submit">{b}</button></form></section>"#,
        h = l.t("別のIPアドレスを調べる", "Check another IP address"),
        v = esc(value),
        b = l.t("調べる", "Check"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_forms() {
        assert_eq!(parse_ip(" 127.0.0.2 "), Some([127, 0, 0, 2].into()));
        assert_eq!(parse_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("::ffff:10.0.0.1"), Some([10, 0, 0, 1].into()));
        assert_eq!(parse_ip("300.1.1.1"), None);
        assert_eq!(parse_ip("<script>"), None);
        assert_eq!(parse_ip(""), None);
    }
}
