//! Japanese and English. The language comes from `?lang=` (remembered in a
//! cookie), else the cookie, else the browser's Accept-Language.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

const COOKIE: &str = "bt_lang";

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Picks the text of this language.
    pub fn t<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    pub fn from_headers(query: Option<&str>, headers: &HeaderMap) -> Lang {
        query_lang(query)
            .or_else(|| super::session::cookie(headers, COOKIE).and_then(Lang::parse))
            .unwrap_or_else(|| accept_language(headers))
    }
}

fn query_lang(query: Option<&str>) -> Option<Lang> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "lang")
        .and_then(|(_, v)| Lang::parse(&v))
}

/// RFC 9110 12.5.4: the first of ja/en by quality; English when neither.
fn accept_language(headers: &HeaderMap) -> Lang {
    let Some(value) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Lang::En;
    };
    let mut best: Option<(f32, Lang)> = None;
    for item in value.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = match tag.split('-').next() {
            Some("ja") => Lang::Ja,
            Some("en") => Lang::En,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).unwrap_or(Lang::En)
}

/// Remembers an explicit `?lang=` choice for a year.
pub async fn remember_lang(req: Request, next: Next) -> Response {
    let chosen = query_lang(req.uri().query());
    let mut res = next.run(req).await;
    if let Some(lang) = chosen {
        let cookie = format!(
            "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn al(v: &str) -> Lang {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(v).unwrap());
        Lang::from_headers(None, &h)
    }

    #[test]
    fn accept_language_by_quality() {
        assert_eq!(al("ja,en-US;q=0.9"), Lang::Ja);
        assert_eq!(al("en-US,en;q=0.9,ja;q=0.8"), Lang::En);
        assert_eq!(al("fr, ja-JP;q=0.5"), Lang::Ja);
        assert_eq!(al("de"), Lang::En);
        assert_eq!(al("ja;q=0, en;q=0.1"), Lang::En);
        assert_eq!(al(";;;q=,,"), Lang::En);
    }

    #[test]
    fn query_wins_over_cookie_and_header() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("en"));
        h.insert(header::COOKIE, HeaderValue::from_static("bt_lang=ja"));
        assert_eq!(Lang::from_headers(None, &h), Lang::Ja);
        assert_eq!(Lang::from_headers(Some("lang=en"), &h), Lang::En);
        assert_eq!(Lang::from_headers(Some("lang=xx"), &h), Lang::Ja);
    }
}
