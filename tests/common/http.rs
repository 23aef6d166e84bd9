//! HTTP client helpers for the web portal, and the usual portal server.

use crate::common::{connect_from, Dnsmasq, TestServer};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP/1.1 answer, read whole (the portal tests).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all_headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends `request` as is (from `source`, e.g. "127.0.0.3", when given) and
/// reads the answer until the server closes; the request should carry
/// `Connection: close`.
pub fn http_raw(source: Option<&str>, to: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = match source {
        Some(src) => connect_from(src, to),
        None => TcpStream::connect(to).unwrap(),
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (413) and close before the body is all sent.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_http(&raw)
}

pub fn parse_http(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + size]);
            rest = &rest[p + 4 + size..];
        }
        body = out;
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// A cookie-keeping HTTP client for the portal, like a browser without JS.
pub struct Browser {
    pub to: SocketAddr,
    pub source: Option<String>,
    pub cookies: HashMap<String, String>,
    pub headers: Vec<(String, String)>,
}

impl Browser {
    pub fn new(to: SocketAddr) -> Browser {
        Browser {
            to,
            source: None,
            cookies: HashMap::new(),
            headers: Vec::new(),
        }
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str) -> HttpResponse {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.to
        );
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req += &format!("Cookie: {}\r\n", c.join("; "));
        }
        for (k, v) in &self.headers {
            req += &format!("{k}: {v}\r\n");
        }
        if method == "POST" {
            req += &format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        req += "\r\n";
        req += body;
        let res = http_raw(self.source.as_deref(), self.to, req.as_bytes());
        for c in res.all_headers("set-cookie") {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        res
    }

    pub fn get(&mut self, path: &str) -> HttpResponse {
        self.request("GET", path, "")
    }

    /// Posts form fields (URL-encoded here).
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpResponse {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
            .collect();
        self.request("POST", path, &body.join("&"))
    }

    /// The value of the first `name="csrf"` field of the last page.
    pub fn csrf_in(page: &str) -> String {
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        page[at..].split('"').next().unwrap().to_string()
    }

    /// Opens the login page and logs in; returns the CSRF token of the
    /// logged-in session (from the settings page).
    pub fn login(&mut self, login: &str, password: &str) -> String {
        let page = self.get("/login");
        let token = Self::csrf_in(&page.body);
        let res = self.post(
            "/login",
            &[("csrf", &token), ("login", login), ("password", password)],
        );
        assert_eq!(res.status, 303, "login failed: {}", res.body);
        let settings = self.get("/settings");
        assert_eq!(settings.status, 200);
        Self::csrf_in(&settings.body)
    }
}

pub fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Like [`pop_server_with`], with a 500 ms DNS timeout (the portal tests).
pub fn web_server_with(head: &str, listeners: &str, records: &[&str]) -> (TestServer, Dnsmasq) {
    let dns = Dnsmasq::start(records, &[]);
    let server = TestServer::start(&format!("{head}\n{}", dns.config(500)), listeners);
    (server, dns)
}
