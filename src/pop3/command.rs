//! POP3 command parser: one command line (without its CRLF) -> [`Command`].
//! Knows nothing of sockets or sessions; keywords are case-insensitive
//! (RFC 1939 3), arguments are checked strictly.

use std::fmt;

/// Longest argument accepted. RFC 1939 3 allows 40 characters, RFC 2449 4
/// raises the line to 255 octets; login names may be full addresses.
pub const MAX_ARG: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The rest of the line: passwords may contain spaces.
    Pass(String),
    Apop {
        name: String,
        digest: String,
    },
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top {
        msg: u32,
        lines: u32,
    },
    Uidl(Option<u32>),
    Capa,
    Stls,
    /// RFC 5034: mechanism (upper-cased) and the optional initial response.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Unknown,
    Nul,
    NotText,
    /// The command exists; its arguments are wrong. The text says how.
    Syntax(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown => f.write_str("Unknown command."),
            ParseError::Nul => f.write_str("NUL byte in command."),
            ParseError::NotText => f.write_str("Command contains non-ASCII or control characters."),
            ParseError::Syntax(s) => write!(f, "Syntax error: {s}"),
        }
    }
}

/// Parses one command line.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::Nul);
    }
    // Passwords are the only free text; anything else must be printable
    // ASCII separated by single spaces (RFC 1939 3).
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let keyword = std::str::from_utf8(keyword)
        .map_err(|_| ParseError::Unknown)?
        .to_ascii_uppercase();
    if keyword == "PASS" {
        return match rest {
            Some(p) if !p.is_empty() && p.len() <= MAX_ARG => {
                if p.iter().any(|&b| b < 0x20 || b == 0x7f) {
                    Err(ParseError::NotText)
                } else {
                    Ok(Command::Pass(String::from_utf8_lossy(p).into_owned()))
                }
            }
            Some(p) if p.len() > MAX_ARG => Err(ParseError::Syntax("argument too long")),
            _ => Err(ParseError::Syntax("PASS needs a password")),
        };
    }
    let args: Vec<&str> = match rest {
        None => Vec::new(),
        Some(r) => {
            if !r.iter().all(|&b| (0x20..0x7f).contains(&b)) {
                return Err(ParseError::NotText);
            }
            let r = std::str::from_utf8(r).map_err(|_| ParseError::NotText)?;
            let args: Vec<&str> = r.split(' ').collect();
            if args.iter().any(|a| a.is_empty()) {
                return Err(ParseError::Syntax(
                    "arguments are separated by single spaces",
                ));
            }
            if args.iter().any(|a| a.len() > MAX_ARG) {
                return Err(ParseError::Syntax("argument too long"));
            }
            args
        }
    };
    let cmd = match (keyword.as_str(), args.as_slice()) {
        ("USER", [name]) => Command::User(name.to_string()),
        ("USER", _) => return Err(ParseError::Syntax("USER name")),
        ("APOP", [name, digest]) => {
            // RFC 1939 7: the digest is 32 hex digits.
            if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::Syntax("APOP digest must be 32 hex digits"));
            }
            Command::Apop {
                name: name.to_string(),
                digest: digest.to_ascii_lowercase(),
            }
        }
        ("APOP", _) => return Err(ParseError::Syntax("APOP name digest")),
        ("STAT", []) => Command::Stat,
        ("LIST", []) => Command::List(None),
        ("LIST", [n]) => Command::List(Some(number(n)?)),
        ("RETR", [n]) => Command::Retr(number(n)?),
        ("DELE", [n]) => Command::Dele(number(n)?),
        ("NOOP", []) => Command::Noop,
        ("RSET", []) => Command::Rset,
        ("QUIT", []) => Command::Quit,
        ("TOP", [n, m]) => Command::Top {
            msg: number(n)?,
            lines: number(m)?,
        },
        ("UIDL", []) => Command::Uidl(None),
        ("UIDL", [n]) => Command::Uidl(Some(number(n)?)),
        ("CAPA", []) => Command::Capa,
        ("STLS", []) => Command::Stls,
        ("AUTH", [mech]) => Command::Auth {
            mechanism: mech.to_ascii_uppercase(),
            initial: None,
        },
        ("AUTH", [mech, initial]) => Command::Auth {
            mechanism: mech.to_ascii_uppercase(),
            initial: Some(initial.to_string()),
        },
        ("STAT" | "NOOP" | "RSET" | "QUIT" | "CAPA" | "STLS", _) => {
            return Err(ParseError::Syntax("this command takes no argument"))
        }
        ("LIST" | "UIDL", _) => return Err(ParseError::Syntax("one optional message number")),
        ("RETR" | "DELE", _) => return Err(ParseError::Syntax("one message number")),
        ("TOP", _) => return Err(ParseError::Syntax("TOP msg lines")),
        ("AUTH", _) => return Err(ParseError::Syntax("AUTH mechanism [initial-response]")),
        _ => return Err(ParseError::Unknown),
    };
    Ok(cmd)
}

/// RFC 1939 3: a message number is decimal digits; no sign, no spaces.
fn number(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax("invalid number"));
    }
    s.parse().map_err(|_| ParseError::Syntax("invalid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(p("stat"), Ok(Command::Stat));
        assert_eq!(p("QuIt"), Ok(Command::Quit));
        assert_eq!(p("user btm0001"), Ok(Command::User("btm0001".into())));
        assert_eq!(p("capa"), Ok(Command::Capa));
        assert_eq!(p("stls"), Ok(Command::Stls));
    }

    #[test]
    fn arguments() {
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("LIST 2"), Ok(Command::List(Some(2))));
        assert_eq!(p("UIDL 10"), Ok(Command::Uidl(Some(10))));
        assert_eq!(p("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(p("DELE 3"), Ok(Command::Dele(3)));
        assert_eq!(p("TOP 1 0"), Ok(Command::Top { msg: 1, lines: 0 }));
        assert_eq!(p("PASS a b  c"), Ok(Command::Pass("a b  c".into())));
        assert_eq!(
            p("APOP mrose c4c9334bac560ecc979e58001b3e22FB"),
            Ok(Command::Apop {
                name: "mrose".into(),
                digest: "c4c9334bac560ecc979e58001b3e22fb".into()
            })
        );
        assert_eq!(
            p("AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            })
        );
        assert_eq!(
            p("AUTH CRAM-MD5"),
            Ok(Command::Auth {
                mechanism: "CRAM-MD5".into(),
                initial: None
            })
        );
    }

    #[test]
    fn strict_syntax() {
        assert_eq!(p("FOO"), Err(ParseError::Unknown));
        assert_eq!(p(""), Err(ParseError::Unknown));
        assert!(matches!(p("RETR"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR -1"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR +1"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR 1 2"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR 99999999999"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("LIST  1"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("STAT 1"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("TOP 1"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("USER"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("USER a b"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("PASS"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("PASS "), Err(ParseError::Syntax(_))));
        assert!(matches!(p("APOP a xyz"), Err(ParseError::Syntax(_))));
        let long = format!("USER {}", "a".repeat(MAX_ARG + 1));
        assert!(matches!(p(&long), Err(ParseError::Syntax(_))));
        let long = format!("PASS {}", "a".repeat(MAX_ARG + 1));
        assert!(matches!(p(&long), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn nul_and_control_bytes() {
        assert_eq!(parse(b"NOOP\0"), Err(ParseError::Nul));
        assert_eq!(parse(b"USER a\0b"), Err(ParseError::Nul));
        assert_eq!(parse(b"PASS a\0b"), Err(ParseError::Nul));
        assert_eq!(parse(b"USER a\x01"), Err(ParseError::NotText));
        assert_eq!(parse(b"USER \xe3\x83\xbb"), Err(ParseError::NotText));
        assert_eq!(parse(b"PASS a\x1bb"), Err(ParseError::NotText));
        assert_eq!(parse(b"\xff\xfe"), Err(ParseError::Unknown));
        // UTF-8 passwords are fine.
        assert_eq!(
            parse("PASS pässwörd".as_bytes()),
            Ok(Command::Pass("pässwörd".into()))
        );
    }
}
