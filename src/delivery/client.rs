//! The SMTP client protocol, sans-IO: reply parsing, EHLO capabilities, the
//! MAIL/RCPT/DATA transaction as a state machine (with RFC 2920 pipelining)
//! and dot-stuffing of the body. Nothing here touches a socket, so every
//! path (rejections, odd replies, pipelined failures) is unit-tested with
//! byte strings; `transport` drives it over TCP/TLS.
//!
//! Why our own client rather than a crate such as lettre: a relay needs
//! each recipient's own reply in one pipelined transaction (partial
//! success, per-recipient DSNs), the body streamed from the queue file
//! instead of a buffer, sessions reused across messages by destination
//! address, and every reply kept verbatim for the DSN's Diagnostic-Code.
//! lettre's transport sends an in-memory message and fails the whole
//! transaction on the first refused recipient.

/// Longest reply line accepted (RFC 5321 4.5.3.1.5 says 512; be lenient).
pub const MAX_REPLY_LINE: usize = 2048;
/// Lines of one multi-line reply (EHLO lists are the longest in practice).
const MAX_REPLY_LINES: usize = 64;

use crate::smtp::address;

/// One complete server reply (RFC 5321 4.2): the server's own type.
pub use crate::smtp::reply::Reply;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed reply line from the server")]
    Malformed,
    #[error("reply too long")]
    TooLong,
}

/// Collects reply lines (without CRLF) into replies.
#[derive(Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Feeds one line; returns the reply when this line was its last.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < 3
            || line.len() > MAX_REPLY_LINE
            || !line[..3].iter().all(u8::is_ascii_digit)
        {
            return Err(ProtocolError::Malformed);
        }
        let code =
            (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
        if !(200..600).contains(&code) || self.code.is_some_and(|c| c != code) {
            return Err(ProtocolError::Malformed);
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ProtocolError::Malformed),
        };
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ProtocolError::TooLong);
        }
        // Replies are logged and quoted in DSNs: keep them printable ASCII.
        let text: String = text
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        self.lines.push(text);
        self.code = Some(code);
        if !last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// What the server offered in its EHLO reply (RFC 5321 4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub esmtp: bool,
    /// RFC 1870; `Some(0)` means "no fixed limit".
    pub size: Option<u64>,
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub starttls: bool,
}

impl Capabilities {
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut c = Capabilities {
            esmtp: true,
            ..Default::default()
        };
        // The first line is the server's greeting name, not a keyword.
        for l in reply.lines.iter().skip(1) {
            let mut words = l.split_ascii_whitespace();
            let kw = words.next().unwrap_or("").to_ascii_uppercase();
            match kw.as_str() {
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "PIPELINING" => c.pipelining = true,
                "8BITMIME" => c.eightbitmime = true,
                "STARTTLS" => c.starttls = true,
                _ => {}
            }
        }
        c
    }
}

pub fn ehlo(name: &str) -> Vec<u8> {
    format!("EHLO {name}\r\n").into_bytes()
}
pub fn helo(name: &str) -> Vec<u8> {
    format!("HELO {name}\r\n").into_bytes()
}

/// What the transport must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read another reply.
    Read,
    /// Write these commands, then read.
    Send(Vec<u8>),
    /// The server said 354: stream the dot-stuffed body, then read.
    Body,
    /// The transaction is over; outcomes are final.
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Mail,
    Rcpt(usize),
    Data,
    Dot,
    Done,
}

/// One MAIL/RCPT/DATA transaction (RFC 5321 3.3). With PIPELINING all
/// commands go out in one write and the replies are matched in order
/// (RFC 2920 3.1); without it each waits for the previous reply.
pub struct Transaction {
    /// Recipients as queued, with the path written for each.
    recipients: Vec<(String, String)>,
    /// Recipients never sent, with the local reply that decided them.
    refused: Vec<(String, Reply)>,
    pipelined: bool,
    phase: Phase,
    mail_reply: Option<Reply>,
    rcpt_replies: Vec<Option<Reply>>,
    /// The final reply to DATA (or to the dot) for accepted recipients.
    data_reply: Option<Reply>,
}

/// A queued path as written between `<` and `>`: the address grammar's own
/// printing, which it reads back as the same path, or None when the grammar
/// refuses it (a queue entry older than the grammar).
fn wire_path(queued: &str) -> Option<String> {
    address::parse_path(queued.as_bytes())
        .ok()
        .map(|p| p.to_string())
}

impl Transaction {
    /// Returns the transaction and what to do first. `size` is declared
    /// with SIZE when offered; BODY=8BITMIME is declared when offered,
    /// since the queue does not know whether the body is 8-bit. Paths the
    /// address grammar refuses are never written: they fail here, with
    /// nothing sent when the sender or every recipient is refused.
    pub fn start(
        caps: &Capabilities,
        sender: &str,
        recipients: Vec<String>,
        size: u64,
    ) -> (Transaction, Next) {
        let mut t = Transaction {
            recipients: Vec::new(),
            refused: Vec::new(),
            pipelined: caps.pipelining,
            phase: Phase::Done,
            mail_reply: None,
            rcpt_replies: Vec::new(),
            data_reply: None,
        };
        let Some(sender_path) = wire_path(sender) else {
            let r = Reply::new(553, "5.1.7 sender address is not valid RFC 5321 syntax");
            t.refused = recipients.into_iter().map(|a| (a, r.clone())).collect();
            return (t, Next::Done);
        };
        for a in recipients {
            match wire_path(&a) {
                Some(p) => t.recipients.push((a, p)),
                None => {
                    let r = Reply::new(553, "5.1.3 recipient address is not valid RFC 5321 syntax");
                    t.refused.push((a, r));
                }
            }
        }
        if t.recipients.is_empty() {
            return (t, Next::Done);
        }
        let mut mail = format!("MAIL FROM:<{sender_path}>");
        if caps.size.is_some() {
            mail += &format!(" SIZE={size}");
        }
        if caps.eightbitmime {
            mail += " BODY=8BITMIME";
        }
        mail += "\r\n";
        let mut first = mail.into_bytes();
        if t.pipelined {
            for i in 0..t.recipients.len() {
                first.extend_from_slice(&t.rcpt(i));
            }
            first.extend_from_slice(b"DATA\r\n");
        }
        t.rcpt_replies = vec![None; t.recipients.len()];
        t.phase = Phase::Mail;
        (t, Next::Send(first))
    }

    fn rcpt(&self, i: usize) -> Vec<u8> {
        format!("RCPT TO:<{}>\r\n", self.recipients[i].1).into_bytes()
    }

    fn any_accepted(&self) -> bool {
        self.rcpt_replies.iter().flatten().any(Reply::is_positive)
    }

    /// Whether the server accepted MAIL (so a session error after this
    /// point leaves the message's fate unknown only past the dot).
    pub fn mail_accepted(&self) -> bool {
        self.mail_reply.as_ref().is_some_and(Reply::is_positive)
    }

    /// Feeds the next reply; says what to do next.
    pub fn reply(&mut self, r: Reply) -> Next {
        match self.phase {
            Phase::Mail => {
                let ok = r.is_positive();
                self.mail_reply = Some(r);
                if self.recipients.is_empty() {
                    self.phase = Phase::Done;
                    return Next::Done;
                }
                self.phase = Phase::Rcpt(0);
                match (ok, self.pipelined) {
                    (_, true) => Next::Read,
                    (true, false) => Next::Send(self.rcpt(0)),
                    (false, false) => {
                        self.phase = Phase::Done;
                        Next::Done
                    }
                }
            }
            Phase::Rcpt(i) => {
                self.rcpt_replies[i] = Some(r);
                if i + 1 < self.recipients.len() {
                    self.phase = Phase::Rcpt(i + 1);
                    return if self.pipelined {
                        Next::Read
                    } else {
                        Next::Send(self.rcpt(i + 1))
                    };
                }
                self.phase = Phase::Data;
                if self.pipelined {
                    Next::Read
                } else if self.mail_accepted() && self.any_accepted() {
                    Next::Send(b"DATA\r\n".to_vec())
                } else {
                    self.phase = Phase::Done;
                    Next::Done
                }
            }
            Phase::Data => {
                if r.code == 354 && self.mail_accepted() && self.any_accepted() {
                    self.phase = Phase::Dot;
                    Next::Body
                } else if r.code == 354 {
                    // RFC 2920 3.1: a pipelined DATA may be accepted with no
                    // valid recipient; end it empty and ignore the outcome.
                    self.phase = Phase::Dot;
                    Next::Send(b".\r\n".to_vec())
                } else {
                    self.data_reply = Some(r);
                    self.phase = Phase::Done;
                    Next::Done
                }
            }
            Phase::Dot => {
                if self.mail_accepted() && self.any_accepted() {
                    self.data_reply = Some(r);
                }
                self.phase = Phase::Done;
                Next::Done
            }
            Phase::Done => Next::Done,
        }
    }

    /// True when the server may hold transaction state (send RSET before reuse).
    pub fn needs_reset(&self) -> bool {
        self.mail_accepted() && self.data_reply.as_ref().is_none_or(|r| !r.is_positive())
    }

    /// Each recipient's outcome: the reply that decided it.
    pub fn outcomes(self) -> Vec<(String, Reply)> {
        let fallback = Reply::new(451, "4.4.2 transaction not completed");
        let mail = self.mail_reply.clone();
        let data = self.data_reply.clone();
        self.refused
            .into_iter()
            .chain(
                self.recipients
                    .into_iter()
                    .zip(self.rcpt_replies)
                    .map(|((addr, _), rcpt)| {
                        let reply = match (&mail, rcpt) {
                            (Some(m), _) if !m.is_positive() => m.clone(),
                            (_, Some(r)) if !r.is_positive() => r,
                            (_, Some(_)) => data.clone().unwrap_or_else(|| fallback.clone()),
                            _ => fallback.clone(),
                        };
                        (addr, reply)
                    }),
            )
            .collect()
    }
}

/// Dot-stuffing (RFC 5321 4.5.2) of a CRLF body fed in chunks, plus the
/// terminating `CRLF.CRLF`; chunk borders may fall anywhere.
pub struct DotStuffer {
    at_line_start: bool,
    last: Option<u8>,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            last: None,
        }
    }
}

impl DotStuffer {
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &b in data {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
        }
        if let Some(&b) = data.last() {
            self.last = Some(b);
        }
    }

    /// The end-of-data marker, completing a last line without CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.last.is_some() && self.last != Some(b'\n') {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(lines: &[&str]) -> Reply {
        let mut p = ReplyParser::default();
        let mut out = None;
        for l in lines {
            out = p.line(l.as_bytes()).unwrap();
        }
        out.expect("complete reply")
    }

    #[test]
    fn parses_multiline_replies_and_status() {
        let r = reply(&["250-mx.test hello", "250-SIZE 1000", "250 PIPELINING"]);
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 3);
        let c = Capabilities::from_ehlo(&r);
        assert_eq!(c.size, Some(1000));
        assert!(c.pipelining && !c.starttls && !c.eightbitmime);
        assert_eq!(reply(&["550 5.1.1 <a@b> unknown"]).status(), "5.1.1");
        assert_eq!(reply(&["451 try later"]).status(), "4.0.0");
        assert_eq!(reply(&["250"]).to_string(), "250");
        assert_eq!(
            reply(&["550-5.7.1 one", "550 5.7.1 two\u{7}"]).to_string(),
            "550 5.7.1 one 5.7.1 two?"
        );
    }

    #[test]
    fn rejects_garbage_replies() {
        let mut p = ReplyParser::default();
        assert!(p.line(b"hello").is_err());
        assert!(p.line(b"250x").is_err());
        assert!(p.line(b"999 no").is_err());
        let mut p = ReplyParser::default();
        p.line(b"250-a").unwrap();
        assert!(p.line(b"251 b").is_err(), "codes must match across lines");
        let mut p = ReplyParser::default();
        let long = vec![b'a'; MAX_REPLY_LINE + 1];
        assert!(p.line(&long).is_err());
        let mut p = ReplyParser::default();
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = p.line(b"250-x") {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(ProtocolError::TooLong));
    }

    fn caps(pipelining: bool) -> Capabilities {
        Capabilities {
            esmtp: true,
            size: Some(0),
            pipelining,
            eightbitmime: true,
            starttls: false,
        }
    }

    #[test]
    fn pipelined_transaction_with_partial_rejection() {
        let rcpts = vec!["a@x.test".to_string(), "b@x.test".to_string()];
        let (mut t, first) = Transaction::start(&caps(true), "s@be.test", rcpts, 42);
        assert_eq!(
            first,
            Next::Send(b"MAIL FROM:<s@be.test> SIZE=42 BODY=8BITMIME\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n".to_vec())
        );
        assert_eq!(t.reply(reply(&["250 ok"])), Next::Read);
        assert_eq!(t.reply(reply(&["550 5.1.1 no"])), Next::Read);
        assert_eq!(t.reply(reply(&["250 ok"])), Next::Read);
        assert_eq!(t.reply(reply(&["354 go"])), Next::Body);
        assert_eq!(t.reply(reply(&["250 queued"])), Next::Done);
        assert!(!t.needs_reset());
        let o = t.outcomes();
        assert_eq!(o[0].1.code, 550);
        assert_eq!(o[1].1.code, 250);
    }

    #[test]
    fn pipelined_all_rejected_still_ends_data() {
        let (mut t, _) = Transaction::start(&caps(true), "", vec!["a@x.test".into()], 1);
        assert_eq!(t.reply(reply(&["250 ok"])), Next::Read);
        assert_eq!(t.reply(reply(&["450 later"])), Next::Read);
        assert_eq!(t.reply(reply(&["354 go"])), Next::Send(b".\r\n".to_vec()));
        assert_eq!(t.reply(reply(&["554 no valid recipients"])), Next::Done);
        assert!(t.needs_reset());
        assert_eq!(t.outcomes()[0].1.code, 450);
    }

    #[test]
    fn sequential_transaction_stops_at_mail_rejection() {
        let mut c = caps(false);
        c.size = None;
        c.eightbitmime = false;
        let rcpts = vec!["a@x.test".to_string()];
        let (mut t, first) = Transaction::start(&c, "s@be.test", rcpts.clone(), 1);
        assert_eq!(first, Next::Send(b"MAIL FROM:<s@be.test>\r\n".to_vec()));
        assert_eq!(t.reply(reply(&["452 full"])), Next::Done);
        assert_eq!(t.outcomes()[0].1.code, 452);

        let (mut t, _) = Transaction::start(&c, "s@be.test", rcpts, 1);
        assert_eq!(
            t.reply(reply(&["250 ok"])),
            Next::Send(b"RCPT TO:<a@x.test>\r\n".to_vec())
        );
        assert_eq!(
            t.reply(reply(&["250 ok"])),
            Next::Send(b"DATA\r\n".to_vec())
        );
        assert_eq!(t.reply(reply(&["354 go"])), Next::Body);
        assert_eq!(t.reply(reply(&["451 disk"])), Next::Done);
        assert!(t.needs_reset());
        assert_eq!(t.outcomes()[0].1.code, 451);
    }

    /// Paths come from the queue, which may hold what an older parser let
    /// through: only paths the address grammar accepts are written, in the
    /// form it reads back identically (the injection of issue item 5).
    #[test]
    fn only_grammatical_paths_reach_the_wire() {
        let evil = "a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]";
        let (t, first) = Transaction::start(&caps(true), evil, vec!["a@x.test".into()], 1);
        assert_eq!(first, Next::Done);
        let o = t.outcomes();
        assert_eq!((o[0].0.as_str(), o[0].1.code), ("a@x.test", 553));

        let rcpts = vec![evil.to_string(), "b@X.Test".to_string()];
        let (mut t, first) = Transaction::start(&caps(true), "s@be.test", rcpts, 1);
        assert_eq!(
            first,
            Next::Send(
                b"MAIL FROM:<s@be.test> SIZE=1 BODY=8BITMIME\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
                    .to_vec()
            )
        );
        assert_eq!(t.reply(reply(&["250 ok"])), Next::Read);
        assert_eq!(t.reply(reply(&["250 ok"])), Next::Read);
        assert_eq!(t.reply(reply(&["354 go"])), Next::Body);
        assert_eq!(t.reply(reply(&["250 queued"])), Next::Done);
        let o = t.outcomes();
        assert_eq!((o[0].0.as_str(), o[0].1.code), (evil, 553));
        assert_eq!((o[1].0.as_str(), o[1].1.code), ("b@X.Test", 250));

        let (_, first) = Transaction::start(&caps(true), "s@be.test", vec![evil.into()], 1);
        assert_eq!(first, Next::Done);
    }

    #[test]
    fn dot_stuffing_across_chunks() {
        let mut d = DotStuffer::default();
        let mut out = Vec::new();
        d.chunk(b".a\r\n", &mut out);
        d.chunk(b"b\r", &mut out);
        d.chunk(b"\n.", &mut out);
        d.chunk(b".c\r\nlast", &mut out);
        d.finish(&mut out);
        assert_eq!(out, b"..a\r\nb\r\n...c\r\nlast\r\n.\r\n");
        let mut d = DotStuffer::default();
        let mut out = Vec::new();
        d.chunk(b"x\r\n", &mut out);
        d.finish(&mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }
}
