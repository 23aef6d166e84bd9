//! The web portal (SEED-16..18): the DNS self-check, customer login, "my
//! settings", remote mail, the FAQ, operator pages and Prometheus metrics.
//! Pages are rendered on the server and work without JavaScript; the only
//! asset is one embedded stylesheet.
//!
//! This module owns the sockets (plain or implicit TLS, HTTP/1.1 via hyper);
//! the handlers in the submodules only see requests.

mod admin;
mod dns_check;
mod faq;
mod form;
mod i18n;
mod layout;
mod metrics;
mod remote_mail;
mod session;
mod settings;

use crate::app::App;
use crate::config::{Listener, TlsMode};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use i18n::Lang;
pub use session::Ctx;

/// Form posts are small; anything larger is refused with 413 unread.
const MAX_BODY: usize = 16 * 1024;
/// A client gets this long to send its request headers (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading the body and answering must be done within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler shares.
pub struct Web {
    pub app: Arc<App>,
    /// The portal runs on implicit TLS: cookies get `Secure`.
    pub tls: bool,
    pub sessions: session::Sessions,
}

/// The TCP peer of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub async fn run(app: Arc<App>, listener: Listener, tcp: TcpListener) {
    let tls = listener.tls_mode() == TlsMode::Implicit;
    let web = Arc::new(Web {
        tls,
        sessions: session::Sessions::new(app.config.web.session_lifetime),
        app: app.clone(),
    });
    let router = router(web);
    let acceptor = app.tls.clone();
    let limits = app.config.limits.clone();
    let unavailable: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let refusals = crate::net::Refusals {
        per_client: unavailable,
        busy: unavailable,
    };
    let fds = app.fds.clone();
    crate::net::accept_loop(tcp, &limits, fds, refusals, move |stream, peer| {
        let router = router.clone();
        let acceptor = acceptor.clone();
        async move {
            if !tls {
                return serve_io(stream, peer, router).await;
            }
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_io(stream, peer, router).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "web TLS handshake timed out"),
            }
        }
    })
    .await;
}

async fn serve_io<I>(io: I, peer: SocketAddr, router: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(Peer(peer));
        let handled = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            // A body that trickles in (or never comes) does not hold a
            // connection forever.
            match tokio::time::timeout(REQUEST_TIMEOUT, handled).await {
                Ok(res) => res,
                Err(_) => Ok(StatusCode::REQUEST_TIMEOUT.into_response()),
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "web connection ended with an error");
    }
}

pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(layout::home))
        .route("/style.css", get(layout::stylesheet))
        .route("/dns-check", get(dns_check::page_handler))
        .route("/api/dns-check", get(dns_check::api))
        .route("/faq", get(faq::page_handler))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/settings", get(settings::page_handler))
        .route("/settings/password", post(settings::change_password))
        .route("/settings/smtp-password", post(settings::smtp_password))
        .route("/mail", get(remote_mail::list))
        .route("/mail/view", get(remote_mail::view))
        .route("/mail/delete", post(remote_mail::delete))
        .route("/admin", get(admin::page_handler))
        .route("/admin/accounts", post(admin::accounts))
        .route("/admin/locks", post(admin::locks))
        .route("/admin/queue", post(admin::queue))
        .route("/metrics", get(metrics::metrics))
        .fallback(layout::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(middleware::from_fn(i18n::remember_lang))
        .layer(middleware::from_fn(security_headers))
        .with_state(web)
}

/// A body announced larger than the limit is refused before it is read.
async fn refuse_large_bodies(req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        let mut res = (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
        // The unread body makes the connection unusable for another request.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    next.run(req).await
}

/// Headers every response carries: no framing, no sniffing, no foreign
/// resources, and no caching of pages that may show an account's data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// A JSON error body with a status, for the API.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}
