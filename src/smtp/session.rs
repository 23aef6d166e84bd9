//! The SMTP session as a state machine without I/O (RFC 5321 3, 4.1.4):
//! commands in, [`Step`]s out. Where an answer needs the store (a recipient's
//! account, a POP-before-SMTP grant, a password check) the step asks for it
//! and the server feeds the result back, so tests drive every path with
//! plain values.

use super::address::{self, AddrError, Destination, Path};
use super::command::Command;
use super::reply::{self, echo, Reply};
use crate::auth::{AuthResult, Credential};
use crate::store::Account;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use std::time::{Duration, Instant};

/// What a listener allows, taken from the config once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    pub local_domains: Vec<String>,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_bad_commands: u32,
    pub max_junk_commands: u32,
    /// How long the session may last before AUTH succeeds.
    pub unauthenticated_lifetime: Duration,
    /// STARTTLS is offered (tls = "starttls").
    pub starttls: bool,
    /// AUTH PLAIN/LOGIN before TLS.
    pub plaintext_auth: bool,
    pub relay_by_auth: bool,
    pub relay_by_grant: bool,
    pub require_auth: bool,
}

impl Settings {
    fn is_local_domain(&self, d: &str) -> bool {
        self.local_domains.iter().any(|l| l.eq_ignore_ascii_case(d))
    }
}

/// One accepted mail transaction (RFC 5321 3.3).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// Empty for the null sender `<>`.
    pub sender: String,
    /// Local recipients' accounts, each once.
    pub local: Vec<Account>,
    /// Remote recipients, each once.
    pub remote: Vec<String>,
    /// Every accepted recipient as given (for `Received: ... for <x>`).
    pub accepted: Vec<String>,
}

#[derive(Debug)]
pub enum Step {
    Reply(Reply),
    /// Send, then close the connection.
    Close(Reply),
    /// Send, then run the TLS handshake and call [`Session::tls_started`].
    StartTls(Reply),
    /// Check these credentials and call [`Session::auth_done`] (after the
    /// failure delay when they are wrong).
    Verify {
        login: String,
        credential: Credential,
    },
    /// Find the account for this address and call [`Session::lookup_done`].
    Lookup {
        address: String,
    },
    /// Is there a live POP-before-SMTP grant for the peer? Call
    /// [`Session::grant_checked`] (SEED-11: checked at RCPT).
    CheckGrant,
    /// Send the 354, read the message, deliver it for `tx`.
    Data {
        reply: Reply,
        tx: Transaction,
    },
}

#[derive(Debug)]
enum AuthExchange {
    Plain,
    LoginUser,
    LoginPass(String),
    Cram(String),
}

pub struct Session {
    s: Settings,
    peer: String,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    tx: Option<Transaction>,
    /// The recipient waiting for a lookup or grant check: (echo, dest).
    pending: Option<(String, Destination)>,
    auth: Option<AuthExchange>,
    bad: u32,
    /// No-op commands since the session began or the last DATA.
    junk: u32,
    started: Instant,
}

impl Session {
    /// `tls` is true on implicit-TLS listeners.
    pub fn new(settings: Settings, peer: std::net::IpAddr, tls: bool) -> Session {
        Session {
            s: settings,
            peer: peer.to_canonical().to_string(),
            tls,
            helo: None,
            esmtp: false,
            user: None,
            tx: None,
            pending: None,
            auth: None,
            bad: 0,
            junk: 0,
            started: Instant::now(),
        }
    }

    /// Time left before the session must end for want of AUTH; None once
    /// authenticated (no limit then).
    pub fn lifetime_left(&self, now: Instant) -> Option<Duration> {
        if self.user.is_some() {
            return None;
        }
        let end = self.started + self.s.unauthenticated_lifetime;
        Some(end.saturating_duration_since(now))
    }

    /// The reply that ends a session whose [`Self::lifetime_left`] ran out.
    pub fn lifetime_over(&self) -> Reply {
        tracing::info!(peer = %self.peer, "unauthenticated session lifetime exceeded");
        Reply::new(
            421,
            format!(
                "4.7.0 {} Error: session too long without authentication",
                self.s.hostname
            ),
        )
    }

    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} ESMTP betomail", self.s.hostname))
    }

    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// RFC 3848 `with` keyword for the Received header.
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.tls, self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    /// The server reads the next line as an AUTH response, not a command.
    pub fn in_auth(&self) -> bool {
        self.auth.is_some()
    }

    fn auth_offered(&self) -> bool {
        (self.s.relay_by_auth || self.s.require_auth) && (self.tls || self.s.plaintext_auth)
    }

    fn may_relay_by_auth(&self) -> bool {
        self.s.relay_by_auth && self.user.is_some()
    }

    /// A malformed or refused command: counted; too many end the session.
    fn bad(&mut self, r: Reply) -> Step {
        self.bad += 1;
        if self.bad >= self.s.max_bad_commands {
            tracing::info!(peer = %self.peer, "too many bad commands");
            return Step::Close(Reply::new(
                421,
                format!("4.7.0 {} Error: too many errors", self.s.hostname),
            ));
        }
        Step::Reply(r)
    }

    /// A command that does no work (Postfix's junk commands): answered
    /// until too many, then the session ends.
    fn junk(&mut self, r: Reply) -> Step {
        self.junk += 1;
        if self.junk > self.s.max_junk_commands {
            tracing::info!(peer = %self.peer, "too many junk commands");
            return Step::Close(Reply::new(
                421,
                format!("4.7.0 {} Error: too many junk commands", self.s.hostname),
            ));
        }
        Step::Reply(r)
    }

    /// A line longer than the limit. Inside an AUTH exchange it ends the
    /// exchange (RFC 4954 6), so the next line is read as a command again.
    pub fn too_long(&mut self) -> Step {
        if self.auth.take().is_some() {
            return self.bad(Reply::new(
                500,
                "5.5.6 Authentication Exchange line is too long",
            ));
        }
        self.bad(Reply::new(500, "5.5.2 Error: line too long"))
    }

    /// One parsed line (or the parser's error reply).
    pub fn handle(&mut self, parsed: Result<Command, Reply>) -> Step {
        let cmd = match parsed {
            Ok(c) => c,
            Err(r) => return self.bad(r),
        };
        match cmd {
            Command::Ehlo(name) => self.greet(name, true),
            Command::Helo(name) => self.greet(name, false),
            Command::Mail { path, params } => self.mail(&path, params.size),
            Command::Rcpt { path } => self.rcpt(&path),
            Command::Data => self.data(),
            Command::Rset => {
                self.tx = None;
                self.junk(reply::ok("2.0.0"))
            }
            Command::Noop => self.junk(reply::ok("2.0.0")),
            // RFC 5321 3.5.3: 252 when we will not verify.
            Command::Vrfy => self.junk(Reply::new(
                252,
                "2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn => self.bad(Reply::new(502, "5.5.1 EXPN is not available")),
            Command::Help => self.junk(Reply::new(
                214,
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT AUTH STARTTLS",
            )),
            Command::Quit => Step::Close(Reply::new(221, "2.0.0 Bye")),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial),
        }
    }

    /// HELO/EHLO. The first greeting (and the one RFC 3207 4.2 asks for
    /// after STARTTLS) is work; a repeated one is a no-op.
    fn greet(&mut self, name: String, esmtp: bool) -> Step {
        let repeated = self.helo.replace(name).is_some();
        self.esmtp = esmtp;
        self.tx = None;
        let r = if esmtp {
            self.ehlo_reply()
        } else {
            Reply::new(250, self.s.hostname.clone())
        };
        if repeated {
            self.junk(r)
        } else {
            Step::Reply(r)
        }
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            format!(
                "{} Hello {} [{}]",
                self.s.hostname,
                echo(self.helo.as_deref().unwrap_or("").as_bytes()),
                self.peer
            ),
            "PIPELINING".into(),
            format!("SIZE {}", self.s.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.s.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN CRAM-MD5".into());
            // SEED-10: what Outlook Express and Netscape 4 look for.
            lines.push("AUTH=PLAIN LOGIN CRAM-MD5".into());
        }
        lines.push("HELP".into());
        Reply::multi(250, lines)
    }

    fn mail(&mut self, path: &[u8], size: Option<u64>) -> Step {
        if self.helo.is_none() {
            return self.bad(reply::bad_sequence("Error: send HELO/EHLO first"));
        }
        if self.tx.is_some() {
            return self.bad(reply::bad_sequence("Error: nested MAIL command"));
        }
        if self.s.require_auth && self.user.is_none() {
            return self.bad(Reply::new(530, "5.7.0 Authentication required"));
        }
        if size.is_some_and(|n| n > self.s.max_message_size) {
            return Step::Reply(reply::too_big());
        }
        let shown = echo(path);
        let sender = match address::parse_path(path) {
            Ok(p) => p.to_string(),
            Err(AddrError::ControlChars) => return self.bad(reply::control_chars("5.1.7", &shown)),
            Err(AddrError::Comma) => return self.bad(reply::illegal_comma(&shown)),
            Err(AddrError::Syntax) => {
                return self.bad(Reply::new(
                    501,
                    format!("5.1.7 <{shown}> Bad sender address syntax"),
                ))
            }
        };
        self.tx = Some(Transaction {
            sender,
            ..Transaction::default()
        });
        Step::Reply(reply::ok("2.1.0"))
    }

    fn rcpt(&mut self, path: &[u8]) -> Step {
        let Some(tx) = &self.tx else {
            return self.bad(reply::bad_sequence("Error: need MAIL command"));
        };
        if tx.accepted.len() >= self.s.max_recipients {
            // RFC 5321 4.5.3.1.10: 452, the client sends the rest later.
            return Step::Reply(Reply::new(452, "4.5.3 Error: too many recipients"));
        }
        let shown = echo(path);
        let parsed = match address::parse_path(path) {
            Ok(p) if p != Path::Null => p,
            Err(AddrError::ControlChars) => return self.bad(reply::control_chars("5.1.3", &shown)),
            // SEED-14: the seed answers a recipient `test@be,to` as unknown.
            Err(AddrError::Comma) => return self.bad(reply::user_unknown(&shown)),
            // `<>` is only a reverse-path (RFC 5321 4.1.1.3).
            Ok(_) | Err(AddrError::Syntax) => {
                return self.bad(Reply::new(
                    501,
                    format!("5.1.3 <{shown}> Bad recipient address syntax"),
                ))
            }
        };
        let primary = self.s.local_domains.first().cloned().unwrap_or_default();
        let dest = address::classify(&parsed, |d| self.s.is_local_domain(d), &primary);
        match dest {
            Destination::Refused => self.bad(reply::relay_rejected(&shown)),
            Destination::Local { ref lookup, .. } => {
                let address = lookup.clone();
                self.pending = Some((shown, dest));
                Step::Lookup { address }
            }
            Destination::Remote(addr) if self.may_relay_by_auth() => self.accept_remote(addr),
            Destination::Remote(_) if self.s.relay_by_grant => {
                self.pending = Some((shown, dest));
                Step::CheckGrant
            }
            Destination::Remote(_) => self.bad(reply::relay_rejected(&shown)),
        }
    }

    /// The answer to [`Step::CheckGrant`].
    pub fn grant_checked(&mut self, granted: Result<bool, ()>) -> Step {
        let Some((shown, Destination::Remote(addr))) = self.pending.take() else {
            return Step::Reply(reply::temp_failure());
        };
        match granted {
            Ok(true) => self.accept_remote(addr),
            Ok(false) => self.bad(reply::relay_rejected(&shown)),
            Err(()) => Step::Reply(Reply::new(451, "4.3.0 Temporary lookup failure")),
        }
    }

    fn accept_remote(&mut self, addr: String) -> Step {
        let Some(tx) = self.tx.as_mut() else {
            return Step::Reply(reply::temp_failure());
        };
        // Domains are lower-cased already; local parts may be case-sensitive.
        if !tx.remote.contains(&addr) {
            tx.remote.push(addr.clone());
        }
        tx.accepted.push(addr);
        Step::Reply(reply::ok("2.1.5"))
    }

    /// The answer to [`Step::Lookup`]: the account, none, or a store failure.
    pub fn lookup_done(&mut self, found: Result<Option<Account>, ()>) -> Step {
        let (Some((shown, Destination::Local { lookup, .. })), Some(tx)) =
            (self.pending.take(), self.tx.as_mut())
        else {
            return Step::Reply(reply::temp_failure());
        };
        match found {
            Ok(Some(a)) if !a.disabled => {
                if !tx.local.iter().any(|l| l.id == a.id) {
                    tx.local.push(a);
                }
                tx.accepted.push(lookup);
                Step::Reply(reply::ok("2.1.5"))
            }
            Ok(_) => self.bad(reply::user_unknown(&shown)),
            Err(()) => Step::Reply(Reply::new(451, "4.3.0 Temporary lookup failure")),
        }
    }

    fn data(&mut self) -> Step {
        match self.tx.take() {
            None => self.bad(reply::bad_sequence("Error: need MAIL command")),
            Some(tx) if tx.accepted.is_empty() => {
                // RFC 2920 3.1: no valid recipients, the DATA is refused.
                self.tx = Some(tx);
                self.bad(Reply::new(554, "5.5.1 Error: no valid recipients"))
            }
            Some(tx) => {
                // As Postfix, the count restarts with each message: a
                // client delivering many in one session may RSET between.
                self.junk = 0;
                Step::Data {
                    reply: Reply::new(354, "End data with <CR><LF>.<CR><LF>"),
                    tx,
                }
            }
        }
    }

    fn starttls(&mut self) -> Step {
        if self.tls {
            return self.bad(reply::bad_sequence("TLS already active"));
        }
        if !self.s.starttls {
            return self.bad(Reply::new(502, "5.5.1 STARTTLS not available"));
        }
        Step::StartTls(Reply::new(220, "2.0.0 Ready to start TLS"))
    }

    /// RFC 3207 4.2: after the handshake the session starts afresh.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.tx = None;
    }

    fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Step {
        if !self.auth_offered() {
            if (self.s.relay_by_auth || self.s.require_auth) && !self.tls {
                return self.bad(Reply::new(
                    538,
                    "5.7.11 Encryption required: use STARTTLS first",
                ));
            }
            return self.bad(Reply::new(502, "5.5.1 AUTH not available on this service"));
        }
        if !self.esmtp {
            return self.bad(reply::bad_sequence("Error: send EHLO first"));
        }
        if self.user.is_some() {
            return self.bad(reply::bad_sequence("Error: already authenticated"));
        }
        if self.tx.is_some() {
            return self.bad(reply::bad_sequence(
                "Error: AUTH not allowed during a mail transaction",
            ));
        }
        match (mechanism, initial) {
            ("PLAIN", None) => self.challenge(AuthExchange::Plain, ""),
            ("PLAIN", Some(r)) => {
                self.auth = Some(AuthExchange::Plain);
                self.auth_line(r.as_bytes())
            }
            ("LOGIN", None) => self.challenge(AuthExchange::LoginUser, "Username:"),
            ("LOGIN", Some(r)) => {
                self.auth = Some(AuthExchange::LoginUser);
                self.auth_line(r.as_bytes())
            }
            ("CRAM-MD5", None) => {
                let c = format!(
                    "<{}.{}@{}>",
                    rand::random::<u64>(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    self.s.hostname
                );
                self.challenge(AuthExchange::Cram(c.clone()), &c)
            }
            ("CRAM-MD5", Some(_)) => self.bad(reply::syntax("CRAM-MD5 takes no initial response")),
            _ => self.bad(Reply::new(504, "5.5.4 Unrecognized authentication type")),
        }
    }

    fn challenge(&mut self, next: AuthExchange, text: &str) -> Step {
        self.auth = Some(next);
        Step::Reply(Reply::new(334, B64.encode(text)))
    }

    /// One client line during an AUTH exchange (RFC 4954 4).
    pub fn auth_line(&mut self, line: &[u8]) -> Step {
        let Some(state) = self.auth.take() else {
            return Step::Reply(reply::bad_sequence("no AUTH in progress"));
        };
        if line == b"*" {
            return self.bad(Reply::new(501, "5.0.0 Authentication cancelled"));
        }
        // RFC 4954 4: "=" is an empty initial response.
        let decoded = if line == b"=" {
            Ok(Vec::new())
        } else {
            B64.decode(line)
        };
        let Ok(decoded) = decoded else {
            return self.bad(Reply::new(501, "5.5.2 Cannot decode response"));
        };
        // RFC 4616 2: credentials are UTF-8. Replacing bad octets (lossy)
        // would let different octet strings verify as the same password.
        let Ok(text) = String::from_utf8(decoded) else {
            return self.auth_done(AuthResult::Failed);
        };
        match state {
            AuthExchange::Plain => {
                // RFC 4616 2: [authzid] NUL authcid NUL passwd.
                let parts: Vec<&str> = text.split('\0').collect();
                match parts.as_slice() {
                    [authz, authc, pass] if authz.is_empty() || authz == authc => Step::Verify {
                        login: authc.to_string(),
                        credential: Credential::Password(pass.to_string()),
                    },
                    // Acting for another user (a different authzid) is not offered.
                    [_, _, _] => self.auth_done(AuthResult::Failed),
                    _ => self.bad(Reply::new(501, "5.5.2 Malformed PLAIN response")),
                }
            }
            AuthExchange::LoginUser => self.challenge(AuthExchange::LoginPass(text), "Password:"),
            AuthExchange::LoginPass(user) => Step::Verify {
                login: user,
                credential: Credential::Password(text),
            },
            AuthExchange::Cram(challenge) => match text.rsplit_once(' ') {
                Some((user, digest)) => Step::Verify {
                    login: user.to_string(),
                    credential: Credential::CramMd5 {
                        challenge,
                        digest: digest.to_string(),
                    },
                },
                None => self.bad(Reply::new(501, "5.5.2 Malformed CRAM-MD5 response")),
            },
        }
    }

    /// The answer to [`Step::Verify`].
    pub fn auth_done(&mut self, result: AuthResult) -> Step {
        match result {
            AuthResult::Ok(account) => {
                self.user = Some(account.name);
                Step::Reply(Reply::new(235, "2.7.0 Authentication successful"))
            }
            AuthResult::Failed => {
                self.bad(Reply::new(535, "5.7.8 Authentication credentials invalid"))
            }
            AuthResult::TempFail(_) => {
                Step::Reply(Reply::new(454, "4.7.0 Temporary authentication failure"))
            }
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
