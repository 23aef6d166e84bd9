//! Who is asking: the client IP (SEED-16 proxy rule), the language, and the
//! login session. Sessions live in memory (random 256-bit ids, idle
//! lifetime from `web.session_lifetime`); each carries its own CSRF token.
//! Logins share the protocol servers' failure counting per client IP.

use super::form::Form;
use super::layout::{esc, page, Notice};
use super::{Lang, Peer, Web};
use crate::auth::{ct_eq, AuthResult, Credential, Purpose};
use crate::store::Account;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const SESSION_COOKIE: &str = "bt_session";
/// Login CSRF: a random token in a cookie that the login form repeats.
const LOGIN_COOKIE: &str = "bt_login";
const MAX_SESSIONS: usize = 100_000;
/// Past this many recent failures from one IP, logins are refused outright
/// (the protocol servers keep delaying; a browser gets a clear page).
const REFUSE_AFTER_FAILURES: u32 = 10;

#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    /// The account's row id and creation time: a session outlives neither
    /// its account's deletion nor a new account that gets the same name
    /// (SQLite may hand the new one the same id).
    account_id: (i64, SystemTime),
    /// For the navigation only; operator pages check the stored account.
    pub admin: bool,
    pub csrf: String,
    expires: Instant,
}

pub struct Sessions {
    lifetime: Duration,
    map: Mutex<HashMap<String, Session>>,
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; returns its id.
    fn create(&self, account: &Account) -> String {
        let id = random_token();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS {
            // Still full of live sessions: drop the one closest to expiry.
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.insert(
            id.clone(),
            Session {
                account: account.name.clone(),
                account_id: (account.id, account.created),
                admin: account.admin,
                csrf: random_token(),
                expires: Instant::now() + self.lifetime,
            },
        );
        id
    }

    /// The live session for `id`, its idle lifetime renewed.
    fn touch(&self, id: &str) -> Option<Session> {
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(id) {
            Some(s) if s.expires > now => {
                s.expires = now + self.lifetime;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of `account` except `keep` (after its password
    /// changed: whoever logged in with the old one is out).
    pub fn end_others(&self, account: &str, keep: Option<&str>) {
        self.lock()
            .retain(|id, s| s.account != account || Some(id.as_str()) == keep);
    }
}

/// One cookie's value from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request as the handlers see it.
pub struct Ctx {
    pub web: Arc<Web>,
    pub lang: Lang,
    /// The client's IP: the peer, or X-Forwarded-For from a trusted proxy.
    pub ip: IpAddr,
    /// The address came from a proxy's X-Forwarded-For header.
    pub forwarded: bool,
    /// The browser talks HTTPS: to us (implicit TLS) or to a trusted proxy
    /// that says so in X-Forwarded-Proto. Cookies then get `Secure`.
    pub secure: bool,
    pub session: Option<(String, Session)>,
    /// The raw query string, for handlers that read parameters leniently.
    pub query: Option<String>,
    login_token: Option<String>,
}

#[axum::async_trait]
impl FromRequestParts<Arc<Web>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Ctx, Infallible> {
        let peer = parts
            .extensions
            .get::<Peer>()
            .map(|p| p.0.ip().to_canonical())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let trusted = &web.app.config.web.trusted_proxies;
        let (ip, forwarded) = client_ip(peer, &parts.headers, trusted);
        let proxied_https = trusted.iter().any(|t| t.to_canonical() == peer)
            && parts
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        let query = parts.uri.query().map(str::to_string);
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| web.sessions.touch(id).map(|s| (id.to_string(), s)));
        Ok(Ctx {
            web: web.clone(),
            lang: Lang::from_headers(query.as_deref(), &parts.headers),
            ip,
            forwarded,
            secure: web.tls || proxied_https,
            session,
            query,
            login_token: cookie(&parts.headers, LOGIN_COOKIE).map(str::to_string),
        })
    }
}

/// X-Forwarded-For is believed only from a configured proxy (SEED-16): the
/// rightmost entry that is not itself a trusted proxy is the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> (IpAddr, bool) {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !is_trusted(&peer) {
        return (peer, false);
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    match hops.into_iter().rev().find(|ip| !is_trusted(ip)) {
        Some(ip) => (ip, true),
        None => (peer, false),
    }
}

/// A logged-in customer whose account is still enabled.
pub struct User {
    pub account: Account,
    pub csrf: String,
}

impl Ctx {
    pub fn app(&self) -> &crate::app::App {
        &self.web.app
    }

    pub fn logged_in(&self) -> bool {
        self.session.is_some()
    }

    pub fn csrf(&self) -> &str {
        self.session
            .as_ref()
            .map(|(_, s)| s.csrf.as_str())
            .unwrap_or("")
    }

    /// The session's account, or a redirect to the login page.
    pub async fn user(&self) -> Result<User, Response> {
        let Some((id, s)) = &self.session else {
            return Err(Redirect::to("/login").into_response());
        };
        let name = s.account.clone();
        let found = self
            .app()
            .store
            .run(move |st| st.accounts.find(&name))
            .await;
        match found {
            Ok(Some(account))
                if !account.disabled && (account.id, account.created) == s.account_id =>
            {
                Ok(User {
                    account,
                    csrf: s.csrf.clone(),
                })
            }
            Ok(_) => {
                self.web.sessions.remove(id);
                Err(Redirect::to("/login").into_response())
            }
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// The user, if the form carries the session's CSRF token.
    pub async fn user_for_post(&self, form: &Form) -> Result<User, Response> {
        let user = self.user().await?;
        match form.get("csrf") {
            Some(t) if ct_eq(t.as_bytes(), user.csrf.as_bytes()) => Ok(user),
            _ => Err(self.forbidden_csrf()),
        }
    }

    pub fn forbidden_csrf(&self) -> Response {
        let l = self.lang;
        self.error_page(
            StatusCode::FORBIDDEN,
            l.t(
                "フォームの有効期限が切れたか、正しくない送信です。ページを開き直してからもう一度お試しください。",
                "This form has expired or was not sent from this site. Reload the page and try again.",
            ),
        )
    }

    pub fn store_error(&self, e: crate::store::StoreError) -> Response {
        tracing::warn!(error = %e, "portal store access failed");
        self.unavailable()
    }

    /// 503: the store could not be reached; nothing internal is shown.
    pub fn unavailable(&self) -> Response {
        self.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            self.lang.t(
                "一時的な障害が発生しました。しばらくしてからもう一度お試しください。",
                "A temporary problem occurred. Please try again in a moment.",
            ),
        )
    }

    pub fn error_page(&self, status: StatusCode, message: &str) -> Response {
        let title = self.lang.t("エラー", "Error");
        let body = Notice::Bad.html(&esc(message));
        (status, page(self, title, &body)).into_response()
    }

    /// The session cookie; `max_age` Some(0) deletes it. A live session's
    /// cookie has no Max-Age: the server ends it after the idle lifetime,
    /// and a fixed Max-Age would log out a user who is still active.
    fn session_cookie(&self, id: &str, max_age: Option<u64>) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let max_age = max_age
            .map(|s| format!("; Max-Age={s}"))
            .unwrap_or_default();
        let v = format!("{SESSION_COOKIE}={id}; Path=/{max_age}; HttpOnly; SameSite=Lax{secure}");
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }
}

fn login_form(ctx: &Ctx, token: &str, login: &str, notice: &str) -> String {
    let l = ctx.lang;
    format!(
        r#"<section class="card narrow">
<h1>{title}</h1>
{notice}
<form method="post" action="/login" class="stack">
<input type="hidden" name="csrf" value="{token}">
<label>{name_label}<input name="login" value="{login}" autocomplete="username" required maxlength="254" placeholder="btm0001 / btm0001@example.jp"></label>
<label>{pw_label}<input name="password" type="password" autocomplete="current-password" required maxlength="1024"></label>
<button type="submit">{button}</button>
</form>
<p class="muted">{hint}</p>
</section>"#,
        title = l.t("ログイン", "Log in"),
        name_label = l.t("アカウント名またはメールアドレス", "Account name or mail address"),
        pw_label = l.t("パスワード", "Password"),
        button = l.t("ログイン", "Log in"),
        hint = l.t(
            "メールソフトに設定しているアカウント名(またはメールアドレス)とパスワードでログインできます。",
            "Use the account name (or mail address) and password from your mail program.",
        ),
        token = esc(token),
        login = esc(login),
    )
}

/// Shows the form with a fresh login CSRF token in a cookie.
fn login_response(ctx: &Ctx, status: StatusCode, login: &str, notice: &str) -> Response {
    let token = random_token();
    let body = login_form(ctx, &token, login, notice);
    let mut res = (status, page(ctx, ctx.lang.t("ログイン", "Log in"), &body)).into_response();
    let secure = if ctx.secure { "; Secure" } else { "" };
    let c = format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict{secure}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub async fn login_page(ctx: Ctx) -> Response {
    if ctx.logged_in() {
        return Redirect::to("/settings").into_response();
    }
    login_response(&ctx, StatusCode::OK, "", "")
}

pub async fn login(ctx: Ctx, State(web): State<Arc<Web>>, body: Bytes) -> Response {
    let form = Form::from_body(&body);
    let l = ctx.lang;
    let login = form.get("login").unwrap_or("").to_string();
    let token_ok = matches!(
        (form.get("csrf"), &ctx.login_token),
        (Some(a), Some(b)) if ct_eq(a.as_bytes(), b.as_bytes())
    );
    if !token_ok {
        let n = Notice::Bad.html(l.t(
            "ログインフォームの有効期限が切れました。もう一度入力してください(ブラウザのCookieを有効にしてください)。",
            "The login form expired. Please enter your details again (cookies must be enabled).",
        ));
        return login_response(&ctx, StatusCode::FORBIDDEN, &login, &n);
    }
    let failures = &web.app.auth.failures;
    if failures.recent(ctx.ip) >= REFUSE_AFTER_FAILURES {
        let n = Notice::Bad.html(l.t(
            "ログインの失敗が続いたため、このIPアドレスからのログインを一時的に止めています。15分ほどしてからお試しください。",
            "Too many failed logins from your IP address. Please wait about 15 minutes and try again.",
        ));
        return login_response(&ctx, StatusCode::TOO_MANY_REQUESTS, &login, &n);
    }
    let password = form.raw("password").to_string();
    if login.is_empty() || password.is_empty() || login.len() > 254 || password.len() > 1024 {
        let n = Notice::Bad.html(l.t(
            "アカウント名とパスワードを入力してください。",
            "Enter your account name and password.",
        ));
        return login_response(&ctx, StatusCode::BAD_REQUEST, &login, &n);
    }
    let result = web
        .app
        .auth
        .login(
            ctx.ip,
            login.clone(),
            Credential::Password(password),
            Purpose::Web,
        )
        .await;
    match result {
        AuthResult::Ok(account) => {
            if let Some((old, _)) = &ctx.session {
                web.sessions.remove(old);
            }
            let id = web.sessions.create(&account);
            tracing::info!(account = %account.name, ip = %ctx.ip, "portal login");
            let mut res = Redirect::to("/settings").into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, ctx.session_cookie(&id, None));
            res
        }
        AuthResult::Failed => {
            tracing::info!(ip = %ctx.ip, "portal login failed");
            let n = Notice::Bad.html(l.t(
                "アカウント名またはパスワードが正しくありません。",
                "The account name or password is incorrect.",
            ));
            login_response(&ctx, StatusCode::UNAUTHORIZED, &login, &n)
        }
        AuthResult::TempFail(e) => {
            tracing::warn!(error = %e, "portal login: store unavailable");
            let n = Notice::Bad.html(l.t(
                "一時的な障害のためログインできません。しばらくしてからお試しください。",
                "Logging in is temporarily unavailable. Please try again in a moment.",
            ));
            login_response(&ctx, StatusCode::SERVICE_UNAVAILABLE, &login, &n)
        }
    }
}

pub async fn logout(ctx: Ctx, body: Bytes) -> Response {
    let form = Form::from_body(&body);
    let Some((id, s)) = &ctx.session else {
        return Redirect::to("/login").into_response();
    };
    if !matches!(form.get("csrf"), Some(t) if ct_eq(t.as_bytes(), s.csrf.as_bytes())) {
        return ctx.forbidden_csrf();
    }
    ctx.web.sessions.remove(id);
    let mut res = Redirect::to("/").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, ctx.session_cookie("", Some(0)));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account::for_test(name, 1)
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let h = xff("198.51.100.9");
        assert_eq!(client_ip(peer, &h, &[proxy]), (peer, false));
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            ("198.51.100.9".parse().unwrap(), true)
        );
        // A spoofed left entry is ignored: the rightmost untrusted hop counts.
        let h = xff("1.2.3.4, 198.51.100.9, 10.0.0.1");
        assert_eq!(
            client_ip(proxy, &h, &[proxy]).0,
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        // Garbage: the proxy itself is reported, not trusted as forwarded.
        assert_eq!(client_ip(proxy, &xff("junk"), &[proxy]), (proxy, false));
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &[proxy]),
            (proxy, false)
        );
        let h = xff("::ffff:198.51.100.9");
        assert_eq!(
            client_ip(proxy, &h, &[proxy]).0,
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = Sessions::new(Duration::from_millis(50));
        let id = s.create(&account("btm0001"));
        assert_eq!(id.len(), 64);
        assert_eq!(s.touch(&id).unwrap().account, "btm0001");
        assert!(s.touch("nope").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.touch(&id).is_none());
        let id = s.create(&account("b"));
        s.remove(&id);
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn end_others_keeps_only_the_given_session() {
        let s = Sessions::new(Duration::from_secs(60));
        let (a1, a2, b) = (
            s.create(&account("a")),
            s.create(&account("a")),
            s.create(&account("b")),
        );
        s.end_others("a", Some(&a1));
        assert!(s.touch(&a1).is_some() && s.touch(&a2).is_none() && s.touch(&b).is_some());
        s.end_others("a", None);
        assert!(s.touch(&a1).is_none());
    }

    #[test]
    fn cookie_lookup() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bt_session=xyz; c"),
        );
        assert_eq!(cookie(&h, "bt_session"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
