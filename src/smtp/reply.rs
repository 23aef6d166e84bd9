//! SMTP replies (RFC 5321 4.2) with enhanced status codes (RFC 3463). Every
//! reply a client can see is built here, so the texts the seed FAQ quotes
//! live in one place.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Each line's text (the enhanced code is part of it).
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, lines }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 5yz: the recipient has failed for good (RFC 5321 4.2.1).
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The RFC 3463 status (`5.1.1`), from the text or from the code class.
    pub fn status(&self) -> String {
        let class = self.code / 100;
        if let Some(first) = self.lines.first().and_then(|l| l.split(' ').next()) {
            let parts: Vec<&str> = first.split('.').collect();
            if parts.len() == 3
                && parts[0] == class.to_string()
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            {
                return first.to_string();
            }
        }
        format!("{class}.0.0")
    }

    /// Wire form: `250-first\r\n250 last\r\n`.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let n = self.lines.len();
        for (i, l) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            let _ = write!(out, "{}{}{}\r\n", self.code, sep, l);
        }
        if n == 0 {
            let _ = write!(out, "{}\r\n", self.code);
        }
        out
    }

    /// One line for logs.
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.last().map_or("", |s| s))
    }
}

/// One line, as stored in the queue and quoted in DSNs: `550 5.1.1 text more`.
impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code)?;
        for l in &self.lines {
            if !l.is_empty() {
                write!(f, " {l}")?;
            }
        }
        Ok(())
    }
}

/// An address as the client sent it, safe to echo: replies stay ASCII
/// (SEED-13), so every octet outside printable ASCII becomes `?`; long
/// input is cut.
pub fn echo(raw: &[u8]) -> String {
    const MAX: usize = 256;
    let mut s: String = raw
        .iter()
        .take(MAX)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if raw.len() > MAX {
        s.push_str("...");
    }
    s
}

pub fn ok(enhanced: &str) -> Reply {
    Reply::new(250, format!("{enhanced} Ok"))
}

pub fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, format!("5.5.1 {text}"))
}

pub fn syntax(text: &str) -> Reply {
    Reply::new(501, format!("5.5.4 {text}"))
}

/// SEED-2, and SEED-14 for a recipient with a comma in its domain.
pub fn user_unknown(addr: &str) -> Reply {
    Reply::new(550, format!("5.1.1 <{addr}> User unknown"))
}

/// SEED-12.
pub fn relay_rejected(addr: &str) -> Reply {
    Reply::new(553, format!("5.7.1 <{addr}> Relay operation rejected"))
}

/// SEED-13: 5.1.7 for the sender, 5.1.3 for a recipient.
pub fn control_chars(enhanced: &str, addr: &str) -> Reply {
    Reply::new(
        553,
        format!("{enhanced} <{addr}> Address contained invalid control characters"),
    )
}

/// SEED-14 (sender).
pub fn illegal_comma(addr: &str) -> Reply {
    Reply::new(
        553,
        format!("5.1.7 <{addr}> Illegal comma in host name part"),
    )
}

pub fn temp_failure() -> Reply {
    Reply::new(451, "4.3.0 Temporary failure, please try again later")
}

/// RFC 5321 4.2.2 452, RFC 3463 X.3.1 "mail system full": the client
/// keeps the message and tries later.
pub fn insufficient_storage() -> Reply {
    Reply::new(452, "4.3.1 Insufficient system storage, try again later")
}

pub fn too_big() -> Reply {
    Reply::new(552, "5.3.4 Message size exceeds fixed maximum message size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_and_echo() {
        let r = Reply::multi(250, vec!["a".into(), "b".into()]);
        assert_eq!(r.to_wire(), "250-a\r\n250 b\r\n");
        assert_eq!(echo("test@be.to・".as_bytes()), "test@be.to???");
        assert_eq!(echo(b"a\x00\r\nb"), "a???b");
    }
}
