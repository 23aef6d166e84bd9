//! The POP3 session state machine (RFC 1939 AUTHORIZATION -> TRANSACTION ->
//! UPDATE), sans I/O: it turns command lines into reply text and an
//! [`Effect`] the server performs (check credentials, lock and list the
//! mailbox, stream a message, start TLS, commit deletions); the result is
//! fed back through `login_done`, `tls_done` and `commit_done`.

use super::command::{self, Command};
use crate::auth::Credential;
use crate::store::MessageInfo;
use base64::Engine;
use std::time::{Duration, Instant};

/// Sent when the client stays silent past the idle timeout.
pub const IDLE_TIMEOUT: &[u8] = b"-ERR Disconnected for inactivity.\r\n";
/// Sent when the session outlives `limits.unauthenticated_session_lifetime`
/// without logging in.
pub const LIFETIME_OVER: &[u8] =
    b"-ERR [SYS/TEMP] Too long without logging in, closing connection.\r\n";
/// The operator cleared the lock (or it lapsed): nothing is deleted.
pub const LOCK_LOST: &[u8] = b"-ERR [IN-USE] Mailbox lock was lost; closing without changes.\r\n";
/// A listed message could not be opened (e.g. removed by another reader).
pub const SEND_FAILED: &[u8] = b"-ERR [SYS/TEMP] Message cannot be read now, try again later.\r\n";
/// Longest login name echoed in a reply.
const SHOWN_NAME_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// RFC 1939 7 APOP timestamp, `<pid.nanos@host>`.
    pub timestamp: String,
    /// The listener offers STLS (tls = "starttls").
    pub stls: bool,
    /// USER/PASS and AUTH PLAIN before TLS.
    pub plaintext_auth: bool,
    pub max_bad_commands: u32,
    pub max_junk_commands: u32,
    /// How long the session may last before a login succeeds.
    pub unauthenticated_lifetime: Duration,
}

/// I/O the server performs for the session.
#[derive(Debug)]
pub enum Effect {
    /// Verify, lock, list; answer with [`Session::login_done`].
    Login {
        login: String,
        credential: Credential,
    },
    /// Write the reply, then the handshake; then [`Session::tls_done`].
    StartTls,
    /// Open the message; on success write `ok`, then the (dot-stuffed)
    /// message, whole or its header and `top` body lines, and ".".
    Send {
        msg: MessageInfo,
        top: Option<u32>,
        ok: String,
    },
    /// UPDATE state: delete these, then [`Session::commit_done`].
    Commit(Vec<MessageInfo>),
    /// Write the reply, then close.
    Close,
}

/// What happened to a login attempt.
#[derive(Debug)]
pub enum LoginResult {
    /// Locked and listed: the snapshot this session works on.
    Ok(Vec<MessageInfo>),
    Failed,
    Busy,
    TempFail,
}

#[derive(Debug, Default)]
pub struct Output {
    pub text: Vec<u8>,
    pub effect: Option<Effect>,
}

impl Output {
    fn line(s: &str) -> Output {
        let mut o = Output::default();
        o.push(s);
        o
    }
    fn push(&mut self, s: &str) {
        self.text.extend_from_slice(s.as_bytes());
        self.text.extend_from_slice(b"\r\n");
    }
    fn with(mut self, e: Effect) -> Output {
        self.effect = Some(e);
        self
    }
}

#[derive(Debug)]
enum Sasl {
    Plain,
    CramMd5 { challenge: String },
}

#[derive(Debug)]
enum State {
    Authorization {
        user: Option<String>,
    },
    /// Waiting for the client's SASL response line.
    Sasl(Sasl),
    /// A Login effect is outstanding; `name` is what the client sent.
    Authenticating {
        name: String,
    },
    Transaction {
        msgs: Vec<MessageInfo>,
        deleted: Vec<bool>,
    },
    /// QUIT given in TRANSACTION; the commit is outstanding.
    Update,
    Closed,
}

pub struct Session {
    cfg: SessionConfig,
    tls: bool,
    state: State,
    bad: u32,
    /// Commands that do no work (CAPA, NOOP, RSET, AUTH without arguments).
    junk: u32,
    challenges: u32,
    started: Instant,
}

/// NAME as the client sent it, reduced to printable ASCII and shortened
/// (SEED-5, SEED-6).
pub fn shown_name(name: &str) -> String {
    name.chars()
        .take(SHOWN_NAME_MAX)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

impl Session {
    pub fn new(cfg: SessionConfig, tls: bool) -> Session {
        Session {
            cfg,
            tls,
            state: State::Authorization { user: None },
            bad: 0,
            junk: 0,
            challenges: 0,
            started: Instant::now(),
        }
    }

    /// Time left before the session must end for want of a login; None in
    /// TRANSACTION and UPDATE (no limit then).
    pub fn lifetime_left(&self, now: Instant) -> Option<Duration> {
        if self.in_transaction() {
            return None;
        }
        let end = self.started + self.cfg.unauthenticated_lifetime;
        Some(end.saturating_duration_since(now))
    }

    pub fn greeting(&self) -> Vec<u8> {
        format!("+OK betomail POP3 ready {}\r\n", self.cfg.timestamp).into_bytes()
    }

    /// True while the mailbox is locked for this session.
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction { .. } | State::Update)
    }

    /// Password-based logins are allowed: over TLS, or the listener allows
    /// plaintext (SPEC defaults).
    fn plaintext_ok(&self) -> bool {
        self.tls || self.cfg.plaintext_auth
    }

    /// A line longer than `limits.max_line_length`.
    pub fn line_too_long(&mut self) -> Output {
        if matches!(self.state, State::Sasl(_)) {
            self.state = State::Authorization { user: None };
        }
        self.bad_command("-ERR line too long")
    }

    /// One line from the client (without CRLF).
    pub fn input(&mut self, line: &[u8]) -> Output {
        if let State::Sasl(_) = self.state {
            return self.sasl_response(line);
        }
        match command::parse(line) {
            Ok(cmd) => self.handle(cmd),
            Err(e) => self.bad_command(&format!("-ERR {e}")),
        }
    }

    fn bad_command(&mut self, reply: &str) -> Output {
        self.bad += 1;
        if self.bad >= self.cfg.max_bad_commands {
            self.state = State::Closed;
            return Output::line("-ERR Too many bad commands, closing connection.")
                .with(Effect::Close);
        }
        Output::line(reply)
    }

    fn wrong_state(&mut self) -> Output {
        self.bad_command("-ERR Command not valid in this state.")
    }

    pub fn handle(&mut self, cmd: Command) -> Output {
        // Postfix's smtpd_junk_command_limit, for POP3: a client polling
        // CAPA or NOOP is not working, it is holding a connection (and,
        // logged in, the mailbox lock). Ending it deletes nothing.
        if matches!(
            cmd,
            Command::Capa | Command::Noop | Command::Rset | Command::AuthList
        ) {
            self.junk += 1;
            if self.junk > self.cfg.max_junk_commands {
                self.state = State::Closed;
                return Output::line("-ERR Too many commands without effect, closing connection.")
                    .with(Effect::Close);
            }
        }
        match cmd {
            Command::Capa => return self.capa(),
            Command::Noop if self.in_transaction() => return Output::line("+OK"),
            Command::Quit => return self.quit(),
            _ => {}
        }
        match &self.state {
            State::Authorization { .. } => self.authorization(cmd),
            State::Transaction { .. } => self.transaction(cmd),
            _ => self.wrong_state(),
        }
    }

    fn capa(&self) -> Output {
        let mut o = Output::line("+OK Capability list follows");
        for c in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
            o.push(c);
        }
        if matches!(self.state, State::Authorization { .. }) {
            if self.plaintext_ok() {
                o.push("USER");
                o.push("SASL PLAIN CRAM-MD5");
            } else {
                o.push("SASL CRAM-MD5");
            }
            if self.cfg.stls && !self.tls {
                o.push("STLS");
            }
        }
        o.push("IMPLEMENTATION betomail");
        o.push(".");
        o
    }

    fn quit(&mut self) -> Output {
        match std::mem::replace(&mut self.state, State::Update) {
            // RFC 1939 6: QUIT in TRANSACTION enters UPDATE.
            State::Transaction { msgs, deleted } => {
                let doomed = msgs
                    .into_iter()
                    .zip(deleted)
                    .filter_map(|(m, d)| d.then_some(m))
                    .collect();
                Output::default().with(Effect::Commit(doomed))
            }
            _ => {
                self.state = State::Closed;
                Output::line("+OK betomail POP3 server signing off.").with(Effect::Close)
            }
        }
    }

    pub fn commit_done(&mut self, result: Result<usize, ()>) -> Output {
        self.state = State::Closed;
        match result {
            Ok(n) => Output::line(&format!(
                "+OK betomail POP3 server signing off ({n} messages deleted)."
            )),
            // RFC 1939 6: -ERR when some deleted messages were not removed.
            Err(()) => Output::line(
                "-ERR [SYS/TEMP] Some deleted messages were not removed; they will be listed again.",
            ),
        }
        .with(Effect::Close)
    }

    fn authorization(&mut self, cmd: Command) -> Output {
        const PLAINTEXT: &str =
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
        match cmd {
            Command::User(name) => {
                if !self.plaintext_ok() {
                    return Output::line(PLAINTEXT);
                }
                self.state = State::Authorization { user: Some(name) };
                Output::line("+OK")
            }
            Command::Pass(password) => {
                if !self.plaintext_ok() {
                    return Output::line(PLAINTEXT);
                }
                let State::Authorization { user: Some(name) } =
                    std::mem::replace(&mut self.state, State::Authorization { user: None })
                else {
                    return self.bad_command("-ERR No username given.");
                };
                self.login(name, Credential::Password(password))
            }
            Command::Apop { name, digest } => {
                let timestamp = self.cfg.timestamp.clone();
                self.login(name, Credential::Apop { timestamp, digest })
            }
            Command::Auth { mechanism, initial } => match mechanism.as_str() {
                "PLAIN" if !self.plaintext_ok() => Output::line(PLAINTEXT),
                "PLAIN" => match initial {
                    Some(r) => self.sasl_plain(r.as_bytes()),
                    None => {
                        self.state = State::Sasl(Sasl::Plain);
                        Output::line("+ ")
                    }
                },
                // RFC 5034 4: CRAM-MD5 has no initial response.
                "CRAM-MD5" if initial.is_some() => {
                    Output::line("-ERR Initial response not allowed for CRAM-MD5.")
                }
                "CRAM-MD5" => {
                    self.challenges += 1;
                    let challenge = format!(
                        "<{}.{}",
                        self.challenges,
                        self.cfg.timestamp.trim_start_matches('<')
                    );
                    let line = format!(
                        "+ {}",
                        base64::engine::general_purpose::STANDARD.encode(&challenge)
                    );
                    self.state = State::Sasl(Sasl::CramMd5 { challenge });
                    Output::line(&line)
                }
                _ => Output::line("-ERR Unsupported authentication mechanism."),
            },
            Command::AuthList => {
                let mut o = Output::line("+OK");
                if self.plaintext_ok() {
                    o.push("PLAIN");
                }
                o.push("CRAM-MD5");
                o.push(".");
                o
            }
            Command::Stls if !self.cfg.stls || self.tls => {
                self.bad_command("-ERR STLS is not available here.")
            }
            Command::Stls => Output::line("+OK Begin TLS negotiation").with(Effect::StartTls),
            _ => self.wrong_state(),
        }
    }

    fn login(&mut self, name: String, credential: Credential) -> Output {
        self.state = State::Authenticating { name: name.clone() };
        Output::default().with(Effect::Login {
            login: name,
            credential,
        })
    }

    /// After STLS (RFC 2595 4): a fresh AUTHORIZATION state.
    pub fn tls_done(&mut self) {
        self.tls = true;
        self.state = State::Authorization { user: None };
    }

    pub fn login_done(&mut self, result: LoginResult) -> Output {
        let name = match std::mem::replace(&mut self.state, State::Authorization { user: None }) {
            State::Authenticating { name } => shown_name(&name),
            other => {
                self.state = other;
                return Output::default();
            }
        };
        match result {
            LoginResult::Ok(msgs) => {
                let size: u64 = msgs.iter().map(|m| m.size).sum();
                let n = msgs.len();
                self.state = State::Transaction {
                    deleted: vec![false; n],
                    msgs,
                };
                Output::line(&format!("+OK Logged in, {n} messages ({size} octets)."))
            }
            LoginResult::Failed => Output::line(&format!(
                "-ERR [AUTH] Password supplied for \"{name}\" is incorrect"
            )),
            LoginResult::Busy => Output::line(&format!(
                "-ERR [IN-USE] {name} lock busy! Is another session active?"
            )),
            LoginResult::TempFail => {
                Output::line("-ERR [SYS/TEMP] Temporary server failure, try again later.")
            }
        }
    }

    fn sasl_response(&mut self, line: &[u8]) -> Output {
        let State::Sasl(sasl) =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return Output::default();
        };
        // RFC 5034 4: "*" cancels the exchange.
        if line == b"*" {
            return Output::line("-ERR Authentication cancelled.");
        }
        match sasl {
            Sasl::Plain => self.sasl_plain(line),
            Sasl::CramMd5 { challenge } => {
                let Some(decoded) = decode64(line) else {
                    return self.bad_command("-ERR Invalid base64 data.");
                };
                let text = String::from_utf8_lossy(&decoded).into_owned();
                // RFC 2195 2: "name digest", the digest 32 lower-case hex digits.
                match text.rsplit_once(' ') {
                    Some((name, digest))
                        if digest.len() == 32 && digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
                    {
                        let digest = digest.to_ascii_lowercase();
                        self.login(name.to_string(), Credential::CramMd5 { challenge, digest })
                    }
                    _ => self.bad_command("-ERR Invalid CRAM-MD5 response."),
                }
            }
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`.
    fn sasl_plain(&mut self, response: &[u8]) -> Output {
        let Some(decoded) = decode64(response) else {
            return self.bad_command("-ERR Invalid base64 data.");
        };
        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        let [authzid, authcid, passwd] = parts.as_slice() else {
            return self.bad_command("-ERR Invalid PLAIN response.");
        };
        let authcid = String::from_utf8_lossy(authcid).into_owned();
        let passwd = String::from_utf8_lossy(passwd).into_owned();
        // Acting for someone else is not offered.
        if !authzid.is_empty() && *authzid != authcid.as_bytes() {
            return Output::line(&format!(
                "-ERR [AUTH] Password supplied for \"{}\" is incorrect",
                shown_name(&authcid)
            ));
        }
        self.login(authcid, Credential::Password(passwd))
    }

    fn transaction(&mut self, cmd: Command) -> Output {
        let State::Transaction { msgs, deleted } = &mut self.state else {
            return Output::default();
        };
        // RFC 1939 5: a message number must exist and not be marked deleted.
        let pick = |n: u32| -> Result<usize, &'static str> {
            let i = (n as usize).wrapping_sub(1);
            match deleted.get(i) {
                None => Err("-ERR No such message."),
                Some(true) => Err("-ERR Message is deleted."),
                Some(false) => Ok(i),
            }
        };
        let live = || {
            msgs.iter()
                .zip(deleted.iter())
                .enumerate()
                .filter(|(_, (_, d))| !**d)
                .map(|(i, (m, _))| (i + 1, m))
        };
        match cmd {
            Command::Stat => {
                let (n, size) = live().fold((0, 0u64), |(n, s), (_, m)| (n + 1, s + m.size));
                Output::line(&format!("+OK {n} {size}"))
            }
            Command::List(Some(n)) => match pick(n) {
                Ok(i) => Output::line(&format!("+OK {n} {}", msgs[i].size)),
                Err(e) => Output::line(e),
            },
            Command::List(None) => {
                let mut o = Output::line("+OK scan listing follows");
                for (i, m) in live() {
                    o.push(&format!("{i} {}", m.size));
                }
                o.push(".");
                o
            }
            Command::Uidl(Some(n)) => match pick(n) {
                Ok(i) => Output::line(&format!("+OK {n} {}", msgs[i].uid)),
                Err(e) => Output::line(e),
            },
            Command::Uidl(None) => {
                let mut o = Output::line("+OK unique-id listing follows");
                for (i, m) in live() {
                    o.push(&format!("{i} {}", m.uid));
                }
                o.push(".");
                o
            }
            Command::Retr(n) => match pick(n) {
                Ok(i) => Output::default().with(Effect::Send {
                    ok: format!("+OK {} octets", msgs[i].size),
                    msg: msgs[i].clone(),
                    top: None,
                }),
                Err(e) => Output::line(e),
            },
            Command::Top { msg, lines } => match pick(msg) {
                Ok(i) => Output::default().with(Effect::Send {
                    ok: "+OK top of message follows".into(),
                    msg: msgs[i].clone(),
                    top: Some(lines),
                }),
                Err(e) => Output::line(e),
            },
            Command::Dele(n) => match pick(n) {
                Ok(i) => {
                    deleted[i] = true;
                    Output::line(&format!("+OK Message {n} deleted."))
                }
                Err(e) => Output::line(e),
            },
            Command::Rset => {
                deleted.iter_mut().for_each(|d| *d = false);
                let size: u64 = msgs.iter().map(|m| m.size).sum();
                Output::line(&format!("+OK {} messages ({size} octets).", msgs.len()))
            }
            _ => self.wrong_state(),
        }
    }
}

fn decode64(line: &[u8]) -> Option<Vec<u8>> {
    // RFC 5034 4: "=" is an empty initial response.
    if line == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(line).ok()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
