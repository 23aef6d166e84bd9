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

/// RFC 5321 4.1.2 `A-d-l` (`@a,@b:`): accepted and ignored as 3.6.1 and
/// Appendix C ask; the route is never followed.
fn strip_source_route(s: &str) -> Result<&str, AddrError> {
    if !s.starts_with('@') {
        return Ok(s);
    }
    let colon = s.find(':').ok_or(AddrError::Syntax)?;
    for hop in s[..colon].split(',') {
        let d = hop.strip_prefix('@').ok_or(AddrError::Syntax)?;
        parse_domain(d)?;
    }
    Ok(&s[colon + 1..])
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

/// RFC 5321 `Domain` (no trailing dot, no empty label) or `address-literal`.
fn parse_domain(d: &str) -> Result<Domain, AddrError> {
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(AddrError::Syntax)?;
        if lit.is_empty() || lit.contains(['[', ']', '\\']) {
            return Err(AddrError::Syntax);
        }
        return Ok(Domain::Literal(lit.to_string()));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.is_empty() || !d.split('.').all(label_ok) {
        return Err(AddrError::Syntax);
    }
    Ok(Domain::Name(d.to_ascii_lowercase()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn local(d: &str) -> bool {
        d == "be.test"
    }

    fn dest(raw: &str) -> Result<Destination, AddrError> {
        parse_path(raw.as_bytes()).map(|p| classify(&p, local, "be.test"))
    }

    fn is_local(l: &str) -> Destination {
        Destination::Local {
            lookup: format!("{l}@be.test"),
            local: l.into(),
        }
    }

    #[test]
    fn plain_addresses() {
        assert_eq!(dest("btm0001@be.test"), Ok(is_local("btm0001")));
        assert_eq!(dest("btm0001@BE.Test"), Ok(is_local("btm0001")));
        assert_eq!(dest("\"btm0001\"@be.test"), Ok(is_local("btm0001")));
        assert_eq!(
            dest("Some.One@Example.ORG"),
            Ok(Destination::Remote("Some.One@example.org".into()))
        );
        assert_eq!(parse_path(b""), Ok(Path::Null));
        assert_eq!(parse_path(b"PostMaster"), Ok(Path::Postmaster));
        assert_eq!(
            dest("\"a b\"@remote.test"),
            Ok(Destination::Remote("\"a b\"@remote.test".into()))
        );
    }

    #[test]
    fn relay_tricks_never_local_never_smuggled() {
        let refused = [
            "u%remote.test@be.test",       // percent hack
            "remote.test!u@be.test",       // bang path
            "\"u@remote.test\"@be.test",   // quoted @
            "\"u%remote.test\"@be.test",   // quoted %
            "\"u\\@remote.test\"@be.test", // quoted-pair @
            "u@[127.0.0.1]",               // address literal
            "u@[IPv6:::1]",
        ];
        for r in refused {
            assert_eq!(dest(r), Ok(Destination::Refused), "{r}");
        }
        // Source routes are ignored: only the final mailbox counts.
        assert_eq!(
            dest("@be.test:u@remote.test"),
            Ok(Destination::Remote("u@remote.test".into()))
        );
        assert_eq!(
            dest("@remote.test,@x.test:btm1@be.test"),
            Ok(is_local("btm1"))
        );
        // Trailing dots and empty labels are not RFC 5321 domains.
        for bad in [
            "u@be.test.",
            "u@remote.test.",
            "u@be..test",
            "u@.be.test",
            "u@-be.test",
            "u@",
            "@be.test",
            "u",
            "u@be.test@x.test",
            ".u@be.test",
            "u.@be.test",
            "u..v@be.test",
            "\"unterminated@be.test",
            "@a:@b:u@c",
            "@:u@be.test",
        ] {
            assert_eq!(dest(bad), Err(AddrError::Syntax), "{bad}");
        }
    }

    #[test]
    fn seed_13_and_14() {
        assert_eq!(
            parse_path("test@be.to・".as_bytes()),
            Err(AddrError::ControlChars)
        );
        assert_eq!(
            parse_path(b"test@be.to\x81\x45"),
            Err(AddrError::ControlChars)
        );
        assert_eq!(parse_path(b"te\x07st@be.to"), Err(AddrError::ControlChars));
        assert_eq!(parse_path(b"test@be,to"), Err(AddrError::Comma));
        assert_eq!(parse_path(b"test@be,to\x01"), Err(AddrError::ControlChars));
    }

    #[test]
    fn length_limits() {
        let long_local = format!("{}@be.test", "a".repeat(65));
        assert_eq!(dest(&long_local), Err(AddrError::Syntax));
        let ok_local = format!("{}@be.test", "a".repeat(64));
        assert!(matches!(dest(&ok_local), Ok(Destination::Local { .. })));
    }
}
