//! SMTP command parser (RFC 5321 4.1): one line of bytes in, a [`Command`]
//! out. Addresses are kept raw here; [`super::address`] judges them, so the
//! session can answer sender and recipient problems differently (SEED-13).

use super::address;
use super::reply::{self, Reply};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        path: Vec<u8>,
        params: MailParams,
    },
    Rcpt {
        path: Vec<u8>,
    },
    Data,
    Rset,
    Noop,
    Vrfy,
    Expn,
    Help,
    Quit,
    StartTls,
    /// Mechanism (upper-cased) and the optional initial response.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 SIZE=.
    pub size: Option<u64>,
}

/// Parses one command line (without its CRLF). The error is the reply.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let line = trim(line);
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &b""[..]),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(reply::syntax("Syntax error, no parameters allowed"))
        }
    };
    match verb.as_slice() {
        b"EHLO" | b"HELO" => {
            let name = text(rest)?;
            if name.is_empty() {
                return Err(reply::syntax("Syntax: EHLO hostname"));
            }
            Ok(if verb == b"EHLO" {
                Command::Ehlo(name)
            } else {
                Command::Helo(name)
            })
        }
        b"MAIL" => {
            let arg = strip_keyword(rest, b"FROM:")
                .ok_or_else(|| reply::syntax("Syntax: MAIL FROM:<address>"))?;
            let (path, params) = split_path(arg)?;
            Ok(Command::Mail {
                path,
                params: mail_params(params)?,
            })
        }
        b"RCPT" => {
            let arg = strip_keyword(rest, b"TO:")
                .ok_or_else(|| reply::syntax("Syntax: RCPT TO:<address>"))?;
            let (path, params) = split_path(arg)?;
            if !params.is_empty() {
                return Err(Reply::new(555, "5.5.4 Unsupported RCPT TO parameter"));
            }
            Ok(Command::Rcpt { path })
        }
        b"DATA" => no_args(Command::Data),
        b"RSET" => no_args(Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        // RFC 5321 4.1.1.6, 4.1.1.7: both take a string.
        b"VRFY" | b"EXPN" if rest.is_empty() => Err(reply::syntax("Syntax: VRFY/EXPN string")),
        b"VRFY" => Ok(Command::Vrfy),
        b"EXPN" => Ok(Command::Expn),
        b"HELP" => Ok(Command::Help),
        b"QUIT" => no_args(Command::Quit),
        b"STARTTLS" => no_args(Command::StartTls),
        b"AUTH" => {
            let rest = text(rest)?;
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = words
                .next()
                .ok_or_else(|| reply::syntax("Syntax: AUTH mechanism [initial-response]"))?
                .to_ascii_uppercase();
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(reply::syntax("Syntax: AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(Reply::new(500, "5.5.2 Error: command not recognized")),
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Command arguments other than addresses must be ASCII.
fn text(s: &[u8]) -> Result<String, Reply> {
    if s.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        Ok(String::from_utf8_lossy(s).into_owned())
    } else {
        Err(reply::syntax(
            "Syntax error: non-ASCII or control characters",
        ))
    }
}

/// `FROM:` / `TO:` case-insensitively; a space after the colon is tolerated
/// (many clients send `MAIL FROM: <a@b>`).
fn strip_keyword<'a>(s: &'a [u8], kw: &[u8]) -> Option<&'a [u8]> {
    if s.len() >= kw.len() && s[..kw.len()].eq_ignore_ascii_case(kw) {
        Some(trim(&s[kw.len()..]))
    } else {
        None
    }
}

/// Splits `<path> params`, where the address grammar says the path ends; a
/// path without brackets (old clients) runs to the first space.
fn split_path(s: &[u8]) -> Result<(Vec<u8>, &[u8]), Reply> {
    if let Some(inner) = s.strip_prefix(b"<") {
        let (path, rest) = address::split_bracketed(inner)
            .ok_or_else(|| reply::syntax("Syntax error: missing '>'"))?;
        Ok((path.to_vec(), trim(rest)))
    } else {
        let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
        if end == 0 {
            return Err(reply::syntax("Syntax error: missing address"));
        }
        Ok((s[..end].to_vec(), trim(&s[end..])))
    }
}

/// RFC 1870 SIZE, RFC 6152 BODY, RFC 4954 5 AUTH= (accepted, not trusted).
fn mail_params(s: &[u8]) -> Result<MailParams, Reply> {
    let mut p = MailParams::default();
    let s = text(s)?;
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (word.to_ascii_uppercase(), None),
        };
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                p.size = Some(v.parse().map_err(|_| reply::syntax("Bad SIZE value"))?);
            }
            ("BODY", Some(v))
                if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
            ("AUTH", Some(_)) => {}
            _ => return Err(Reply::new(555, "5.5.4 Unsupported MAIL FROM parameter")),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(path: &[u8], size: Option<u64>) -> Command {
        Command::Mail {
            path: path.to_vec(),
            params: MailParams { size },
        }
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse(b"ehlo client.test"),
            Ok(Command::Ehlo("client.test".into()))
        );
        assert_eq!(parse(b"MAIL FROM:<a@b.test>"), Ok(mail(b"a@b.test", None)));
        assert_eq!(
            parse(b"mail from: <a@b.test> SIZE=1000 BODY=8BITMIME"),
            Ok(mail(b"a@b.test", Some(1000)))
        );
        assert_eq!(parse(b"MAIL FROM:<>"), Ok(mail(b"", None)));
        assert_eq!(parse(b"MAIL FROM:a@b.test"), Ok(mail(b"a@b.test", None)));
        // A path ends at its first `>`: the address grammar has none inside.
        assert_eq!(parse(b"RCPT TO:<\"a>b\"@c.test>").unwrap_err().code, 555);
        assert_eq!(
            parse(b"RCPT TO:<test@be,to>"),
            Ok(Command::Rcpt {
                path: b"test@be,to".to_vec()
            })
        );
        assert_eq!(
            parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            })
        );
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"VRFY x"), Ok(Command::Vrfy));
        // Non-ASCII addresses reach the session (SEED-13 needs its own reply).
        assert_eq!(
            parse("RCPT TO:<test@be.to・>".as_bytes()),
            Ok(Command::Rcpt {
                path: "test@be.to・".as_bytes().to_vec()
            })
        );
    }

    #[test]
    fn errors() {
        let code = |l: &[u8]| parse(l).unwrap_err().code;
        assert_eq!(code(b"FOO"), 500);
        assert_eq!(code(b""), 500);
        assert_eq!(code(b"\x00\x01"), 500);
        assert_eq!(code(b"EHLO"), 501);
        assert_eq!(code(b"MAIL TO:<a@b>"), 501);
        assert_eq!(code(b"MAIL FROM:<a@b"), 501);
        assert_eq!(code(b"MAIL FROM:<a@b> SIZE=x"), 501);
        assert_eq!(code(b"MAIL FROM:<a@b> SMTPUTF8"), 555);
        assert_eq!(code(b"RCPT TO:<a@b> NOTIFY=NEVER"), 555);
        assert_eq!(code(b"DATA now"), 501);
        assert_eq!(code(b"AUTH"), 501);
        assert_eq!(code(b"VRFY"), 501);
        assert_eq!(code(b"EXPN "), 501);
    }
}
