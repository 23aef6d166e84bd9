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
    fn account_addresses() {
        let check = |a: &str| check_account_address(a, local);
        assert_eq!(check("btm0001@be.test"), Ok(()));
        assert_eq!(check("first.last@be.test"), Ok(()));
        assert_eq!(check("a@remote.test"), Err(AccountAddrError::NotLocal));
        for bad in [
            "x\r\nBcc: victim@remote.test\r\nX: <a@be.test",
            "a b>, <evil@remote.test@be.test",
            "\"a\"@be.test",
            "a%x@be.test",
            "a@BE.test",
            "@x.test:a@be.test",
            "a@[127.0.0.1]",
            "postmaster",
            "",
        ] {
            assert_eq!(check(bad), Err(AccountAddrError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn length_limits() {
        let long_local = format!("{}@be.test", "a".repeat(65));
        assert_eq!(dest(&long_local), Err(AddrError::Syntax));
        let ok_local = format!("{}@be.test", "a".repeat(64));
        assert!(matches!(dest(&ok_local), Ok(Destination::Local { .. })));
    }
}

/// One grammar: whatever `parse_path` accepts, printed, is read back by the
/// command parser and by `parse_path` as the same path, and never holds a
/// `<` or `>` that a receiver could take for the end of the path.
#[cfg(test)]
mod round_trip {
    use super::*;
    use crate::smtp::command::{self, Command};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Literals of every kind and near miss, and the fuzzing finding.
    const TRICKY: &[&str] = &[
        "R@[or'@VVVV\"-VVVVVVVV]",
        "a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]",
        "a@[127.0.0.1]",
        "a@[IPv6:::1]",
        "a@[ipv6:2001:db8::1]",
        "a@[IPv6:::ffff:192.0.2.1]",
        "a@[x-tag:some-content]",
        "a@[x:>]",
        "a@[x:\"]",
        "a@[256.0.0.1]",
        "a@[1.2.3]",
        "a@[IPv6:nope]",
        "a@[-x:y]",
        "a@[:y]",
        "\"a>b\"@c.test",
        "\"a b\"@c.test",
        "\"a\\\"b\\\\\"@c.test",
        "\"\"@c.test",
        "@[IPv6:::1]:u@c.test",
        "@a.test,@[127.0.0.1]:u@c.test",
        "@[x:y,z]:u@c.test",
        "postmaster",
        "",
    ];

    /// The parts that attackers and fuzzers combine.
    const PIECES: &[&str] = &[
        "a",
        "Z9",
        ".",
        "-",
        "@",
        "[",
        "]",
        "\"",
        "\\",
        "<",
        ">",
        ":",
        ",",
        " ",
        "'",
        "%",
        "!",
        "IPv6:",
        "::1",
        "127.0.0.1",
        "x:",
        "be.test",
        "=",
        "\t",
    ];

    /// Random pieces, half of them shaped `[route:]local@domain` so that
    /// many parse.
    fn generated(n: usize) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(5321);
        let pieces = |rng: &mut StdRng, max: usize| -> String {
            let len = rng.gen_range(1..=max);
            (0..len)
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect()
        };
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    return pieces(&mut rng, 12);
                }
                let route = match rng.gen_range(0..4) {
                    0 => format!("@{}:", pieces(&mut rng, 3)),
                    _ => String::new(),
                };
                let local = match rng.gen_range(0..3) {
                    0 => format!("\"{}\"", pieces(&mut rng, 4)),
                    _ => pieces(&mut rng, 3),
                };
                let domain = match rng.gen_range(0..3) {
                    0 => format!("[{}]", pieces(&mut rng, 4)),
                    _ => pieces(&mut rng, 3),
                };
                format!("{route}{local}@{domain}")
            })
            .collect()
    }

    /// Checks the property for one input; the path when it parsed.
    fn check(raw: &str) -> Option<Path> {
        let path = parse_path(raw.as_bytes()).ok()?;
        let printed = path.to_string();
        assert!(
            !printed.contains(['<', '>']),
            "{raw:?} prints as {printed:?}"
        );
        assert_eq!(parse_path(printed.as_bytes()), Ok(path.clone()), "{raw:?}");
        let wire = printed.as_bytes().to_vec();
        assert_eq!(
            command::parse(format!("RCPT TO:<{printed}>").as_bytes()),
            Ok(Command::Rcpt { path: wire.clone() }),
            "{raw:?}"
        );
        match command::parse(format!("MAIL FROM:<{printed}> SIZE=1").as_bytes()) {
            Ok(Command::Mail { path, params }) => {
                assert_eq!((path, params.size), (wire, Some(1)), "{raw:?}")
            }
            other => panic!("{raw:?} as MAIL FROM: {other:?}"),
        }
        Some(path)
    }

    #[test]
    fn printed_paths_parse_back_identically() {
        let tricky_ok = TRICKY.iter().filter_map(|r| check(r)).count();
        let valid: Vec<Path> = generated(200_000).iter().filter_map(|r| check(r)).collect();
        let has = |f: fn(&Mailbox) -> bool| {
            valid
                .iter()
                .filter(|p| matches!(p, Path::Mailbox(m) if f(m)))
                .count()
        };
        let (quoted, literal) = (
            has(|m| m.quoted),
            has(|m| matches!(m.domain, Domain::Literal(_))),
        );
        // The generator must reach valid paths of each kind, or the
        // property holds vacuously.
        assert!(
            tricky_ok >= 10 && valid.len() >= 1000 && quoted >= 100 && literal >= 20,
            "{tricky_ok} {} {quoted} {literal}",
            valid.len()
        );
    }
}

#[cfg(test)]
mod literals {
    use super::*;

    fn literal(raw: &str) -> Result<Domain, AddrError> {
        match parse_path(raw.as_bytes())? {
            Path::Mailbox(m) => Ok(m.domain),
            p => panic!("{p:?}"),
        }
    }

    /// RFC 5321 4.1.3: IPv4, `IPv6:` and Standardized-tag ":" 1*dcontent.
    #[test]
    fn only_rfc_5321_address_literals() {
        for ok in [
            "a@[127.0.0.1]",
            "a@[0.0.0.0]",
            "a@[255.255.255.255]",
            "a@[IPv6:::1]",
            "a@[IPv6:2001:db8::1]",
            "a@[ipv6:::ffff:192.0.2.1]",
            "a@[IPv6:1:2:3:4:5:6:7:8]",
            "a@[x-tag:some.content!]",
        ] {
            let lit = &ok[3..ok.len() - 1];
            assert_eq!(literal(ok), Ok(Domain::Literal(lit.into())), "{ok}");
        }
        for bad in [
            "a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]",
            "R@[or'@VVVV\"-VVVVVVVV]",
            "a@[]",
            "a@[1.2.3]",
            "a@[1.2.3.4.5]",
            "a@[256.1.1.1]",
            "a@[1.2.3.0004]",
            "a@[IPv6:]",
            "a@[IPv6:1.2.3.4]",
            "a@[IPv6:::1%eth0]",
            "a@[IPv6:::g]",
            "a@[x:]",
            "a@[:x]",
            "a@[-x:y]",
            "a@[x-:y]",
            "a@[x y:z]",
            "a@[x:y z]",
            "a@[x:a>b]",
            "a@[x:a<b]",
            "a@[x:a\"b]",
            "a@[x:a@b]",
            "a@[nocolon]",
        ] {
            assert_eq!(literal(bad), Err(AddrError::Syntax), "{bad}");
        }
    }

    /// A `<` or `>` inside a path ends it early for receivers that look for
    /// the first `>`: refused even where RFC 5321 qtextSMTP allows it.
    #[test]
    fn no_angle_brackets_inside_a_path() {
        for bad in ["\"a>b\"@c.test", "\"a<b\"@c.test", "\"a\\>b\"@c.test"] {
            assert_eq!(parse_path(bad.as_bytes()), Err(AddrError::Syntax), "{bad}");
        }
    }

    /// Source routes may name literals whose `:` is not the route's end.
    #[test]
    fn source_routes_with_literals() {
        for (raw, domain) in [
            ("@[IPv6:::1]:u@c.test", "c.test"),
            ("@a.test,@[127.0.0.1]:u@c.test", "c.test"),
        ] {
            assert_eq!(literal(raw), Ok(Domain::Name(domain.into())), "{raw}");
        }
        assert_eq!(parse_path(b"@[x:y]z:u@c.test"), Err(AddrError::Syntax));
    }
}
