//! RFC 5321 4.1.2 paths: `<>`, `<local@domain>`, quoted local parts, address
//! literals and source routes, parsed strictly; and the one decision that
//! keeps us from being an open relay: is a recipient one of our mailboxes,
//! a remote address, or neither (SEED-12).
//!
//! The decision is taken on the parsed form, never on substrings: the
//! percent hack (`u%remote@local`), bang paths (`remote!u@local`), quoted
//! local parts hiding `@` or `%`, address literals and source routes can
//! never make a remote address look local or vice versa.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// Lower-cased, no trailing dot.
    Name(String),
    /// `[127.0.0.1]`, `[IPv6:::1]`: the text between the brackets.
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Unquoted content of the local part (case kept, RFC 5321 2.4).
    pub local: String,
    pub quoted: bool,
    pub domain: Domain,
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted {
            write!(f, "\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    write!(f, "\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"")?;
        } else {
            write!(f, "{}", self.local)?;
        }
        match &self.domain {
            Domain::Name(d) => write!(f, "@{d}"),
            Domain::Literal(l) => write!(f, "@[{l}]"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `<>`: the null reverse-path (bounces, RFC 5321 4.5.5).
    Null,
    /// `<Postmaster>` without a domain (RFC 5321 4.5.1).
    Postmaster,
    Mailbox(Mailbox),
}

/// The text between `<` and `>` as we write it: the session stores it and
/// the outbound client sends it, so `parse_path` must read it back as the
/// same path (source routes are dropped, domains lower-cased).
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Null => Ok(()),
            Path::Postmaster => write!(f, "postmaster"),
            Path::Mailbox(m) => m.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// Control or non-ASCII octets (SEED-13); we do not offer SMTPUTF8.
    ControlChars,
    /// A comma in the domain (SEED-14), typed instead of a dot.
    Comma,
    Syntax,
}

/// RFC 5321 4.5.3.1.1 and 4.5.3.1.2.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

/// Parses the text between `<` and `>`.
///
/// The grammar is RFC 5321 4.1.2 with one restriction: no `<` or `>`
/// anywhere inside a path (RFC qtextSMTP and dcontent allow them). A
/// receiver that ends the path at the first `>` would read the rest as
/// parameters, so a path holding one could never be relayed safely; and
/// without them the path ends at the first `>` for every parser.
pub fn parse_path(raw: &[u8]) -> Result<Path, AddrError> {
    if raw.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
        return Err(AddrError::ControlChars);
    }
    // Only printable ASCII from here on.
    let s = std::str::from_utf8(raw).map_err(|_| AddrError::ControlChars)?;
    if s.is_empty() {
        return Ok(Path::Null);
    }
    if s.eq_ignore_ascii_case("postmaster") {
        return Ok(Path::Postmaster);
    }
    if s.contains(['<', '>']) {
        return Err(AddrError::Syntax);
    }
    let s = strip_source_route(s)?;
    let (local, quoted, rest) = if let Some(q) = s.strip_prefix('"') {
        let (content, rest) = quoted_string(q)?;
        (content, true, rest)
    } else {
        let at = s.find('@').ok_or(AddrError::Syntax)?;
        let local = &s[..at];
        if !is_dot_string(local) {
            return Err(AddrError::Syntax);
        }
        (local.to_string(), false, &s[at..])
    };
    let domain = rest.strip_prefix('@').ok_or(AddrError::Syntax)?;
    if domain.contains(',') {
        return Err(AddrError::Comma);
    }
    if local.len() > MAX_LOCAL || domain.len() > MAX_DOMAIN {
        return Err(AddrError::Syntax);
    }
    Ok(Path::Mailbox(Mailbox {
        local,
        quoted,
        domain: parse_domain(domain)?,
    }))
}

/// Splits what follows a path's `<` into the path and the rest of the line
/// after its `>`; None without a `>`. A path never holds a `>` (see
/// [`parse_path`]), so the first one ends it.
pub fn split_bracketed(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = s.iter().position(|&b| b == b'>')?;
    Some((&s[..end], &s[end + 1..]))
}

/// RFC 5321 4.1.2 `A-d-l` (`@a,@b:`): accepted and ignored as 3.6.1 and
/// Appendix C ask; the route is never followed.
fn strip_source_route(mut s: &str) -> Result<&str, AddrError> {
    if !s.starts_with('@') {
        return Ok(s);
    }
    loop {
        let hop = s.strip_prefix('@').ok_or(AddrError::Syntax)?;
        // An address literal may hold `:` and `,` of its own.
        let end = if hop.starts_with('[') {
            hop.find(']').ok_or(AddrError::Syntax)? + 1
        } else {
            hop.find([',', ':']).ok_or(AddrError::Syntax)?
        };
        parse_domain(&hop[..end])?;
        match hop[end..].split_at_checked(1) {
            Some((",", rest)) => s = rest,
            Some((":", rest)) => return Ok(rest),
            _ => return Err(AddrError::Syntax),
        }
    }
}

/// The content of a quoted-string after its opening quote, and the rest.
fn quoted_string(s: &str) -> Result<(String, &str), AddrError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => out.push(chars.next().ok_or(AddrError::Syntax)?.1),
            c => out.push(c),
        }
    }
    Err(AddrError::Syntax)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// RFC 5321 `Dot-string`: atoms joined by single dots.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|a| !a.is_empty() && a.chars().all(is_atext))
}

/// RFC 5321 4.1.2 `Ldh-str` after a `Let-dig`: letters, digits and
/// hyphens, not starting or ending with a hyphen.
fn is_ldh(l: &str) -> bool {
    !l.is_empty()
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// RFC 5321 `Domain` (no trailing dot, no empty label) or `address-literal`.
fn parse_domain(d: &str) -> Result<Domain, AddrError> {
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(AddrError::Syntax)?;
        if !is_address_literal(lit) {
            return Err(AddrError::Syntax);
        }
        return Ok(Domain::Literal(lit.to_string()));
    }
    let label_ok = |l: &str| l.len() <= 63 && is_ldh(l);
    if d.is_empty() || !d.split('.').all(label_ok) {
        return Err(AddrError::Syntax);
    }
    Ok(Domain::Name(d.to_ascii_lowercase()))
}

/// RFC 5321 4.1.3: `IPv4-address-literal`, `IPv6-address-literal` or
/// `General-address-literal` (Standardized-tag ":" 1*dcontent). dcontent
/// is printable ASCII but `[ \ ]`; we also refuse `"`, `@`, `<` and `>`,
/// which other parsers take for quotes, the domain or the path's end.
fn is_address_literal(lit: &str) -> bool {
    if is_ipv4_literal(lit) {
        return true;
    }
    let Some((tag, content)) = lit.split_once(':') else {
        return false;
    };
    if tag.eq_ignore_ascii_case("IPv6") {
        // RFC 5321 IPv6-addr is the RFC 4291 2.2 text form, zone-less.
        return content.parse::<std::net::Ipv6Addr>().is_ok();
    }
    is_ldh(tag)
        && !content.is_empty()
        && content
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"[\\]\"@<>".contains(&b))
}

/// RFC 5321 4.1.3 `IPv4-address-literal`: four `Snum` (1*3DIGIT, 0-255).
fn is_ipv4_literal(lit: &str) -> bool {
    let snum = |n: &str| {
        (1..=3).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_digit())
            && n.parse::<u16>().is_ok_and(|v| v <= 255)
    };
    let parts: Vec<&str> = lit.split('.').collect();
    parts.len() == 4 && parts.iter().all(|n| snum(n))
}

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One of our domains; `lookup` is the address to find the account by.
    Local { lookup: String, local: String },
    /// Another domain: only clients allowed to relay may send there.
    Remote(String),
    /// A routing trick or a target we never deliver to (address literals,
    /// `%`/`!`/`@` in a local part at our domain): refused as relay.
    Refused,
}

/// Decides local vs remote after parsing (SEED-12). `primary` is the domain
/// `<Postmaster>` belongs to.
pub fn classify(path: &Path, is_local_domain: impl Fn(&str) -> bool, primary: &str) -> Destination {
    match path {
        Path::Null => Destination::Refused,
        Path::Postmaster => Destination::Local {
            lookup: format!("postmaster@{primary}"),
            local: "postmaster".into(),
        },
        Path::Mailbox(m) => match &m.domain {
            Domain::Literal(_) => Destination::Refused,
            Domain::Name(d) if is_local_domain(d) => {
                // Our account names are plain atoms: anything that could
                // route elsewhere is not one of our mailboxes.
                if m.local.contains(['%', '!', '@', '"', '\\', ' ']) || !is_dot_string(&m.local) {
                    Destination::Refused
                } else {
                    Destination::Local {
                        lookup: format!("{}@{d}", m.local),
                        local: m.local.clone(),
                    }
                }
            }
            Domain::Name(_) => Destination::Remote(m.to_string()),
        },
    }
}

/// Why an account address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAddrError {
    /// A mailbox, but at a domain that is not ours.
    NotLocal,
    /// Not the plain `local@domain` that SMTP delivers to an account.
    Invalid,
}

/// An account's address (SEED-1) is exactly what [`classify`] delivers to
/// a local mailbox, written the way it looks the account up: an unquoted
/// Dot-string at one of our domains, lower-case domain, no route, quotes,
/// spaces, brackets or line breaks. One grammar for SMTP and accounts.
pub fn check_account_address(
    address: &str,
    is_local_domain: impl Fn(&str) -> bool,
) -> Result<(), AccountAddrError> {
    let path = parse_path(address.as_bytes()).map_err(|_| AccountAddrError::Invalid)?;
    match &path {
        Path::Mailbox(Mailbox {
            domain: Domain::Name(d),
            ..
        }) if !is_local_domain(d) => return Err(AccountAddrError::NotLocal),
        Path::Mailbox(_) => {}
        _ => return Err(AccountAddrError::Invalid),
    }
    match classify(&path, is_local_domain, "") {
        Destination::Local { lookup, .. } if lookup == address => Ok(()),
        _ => Err(AccountAddrError::Invalid),
    }
}

#[cfg(test)]
#[path = "address_tests.rs"]
mod tests;
