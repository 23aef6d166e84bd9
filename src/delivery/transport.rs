//! SMTP client sessions over TCP and TLS: the only place in outbound
//! delivery that awaits on sockets. It drives the sans-IO `client` state
//! machine with per-phase timeouts (RFC 5321 4.5.3.2) and bounded reads.
//!
//! TLS (outbound.tls): `opportunistic` uses STARTTLS when offered and falls
//! back to plaintext on a new connection if the handshake fails;
//! `required` refuses to send without TLS. Neither verifies the
//! certificate (like Postfix's `may` and `encrypt` levels): MX hosts rarely
//! present certificates for the names a sender can check without DANE or
//! MTA-STS, and an unverified session still defeats passive sniffing.

use super::body::Body;
use super::client::{self, Capabilities, Next, Reply, ReplyParser, Transaction, MAX_REPLY_LINE};
use crate::config::{OutboundConfig, OutboundTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a message did not get through a session.
#[derive(Debug)]
pub enum SendError {
    /// The server accepted nothing of this transaction: trying another
    /// host (or a fresh connection) cannot duplicate the message.
    Early(Reply),
    /// Broken after MAIL was accepted: the outcome stays unknown, retry later.
    Late(Reply),
}

pub struct Session {
    io: BufReader<Box<dyn Io>>,
    caps: Capabilities,
    pub peer: SocketAddr,
    pub tls: bool,
    /// Out of step with the server: do not reuse.
    broken: bool,
    command_timeout: Duration,
    data_timeout: Duration,
}

fn io_reply(what: &str, peer: SocketAddr, e: impl std::fmt::Display) -> Reply {
    Reply::new(451, format!("4.4.2 {what} {peer}: {e}"))
}

impl Session {
    /// Connects, reads the greeting, says EHLO (HELO if refused) and
    /// negotiates STARTTLS per `cfg.tls`. Errors carry a reply saying why.
    pub async fn open(
        peer: SocketAddr,
        host: &str,
        helo_name: &str,
        cfg: &OutboundConfig,
    ) -> Result<Session, Reply> {
        match Self::open_once(peer, host, helo_name, cfg, cfg.tls).await {
            Err(OpenError::Tls(r)) if cfg.tls == OutboundTls::Opportunistic => {
                tracing::info!(%peer, reply = %r, "TLS failed; retrying without STARTTLS");
                Self::open_once(peer, host, helo_name, cfg, OutboundTls::None)
                    .await
                    .map_err(OpenError::into_reply)
            }
            r => r.map_err(OpenError::into_reply),
        }
    }

    async fn open_once(
        peer: SocketAddr,
        host: &str,
        helo_name: &str,
        cfg: &OutboundConfig,
        tls: OutboundTls,
    ) -> Result<Session, OpenError> {
        let tcp = match timeout(cfg.connect_timeout, TcpStream::connect(peer)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(OpenError::Plain(io_reply("connecting to", peer, e))),
            Err(_) => {
                return Err(OpenError::Plain(io_reply(
                    "connecting to",
                    peer,
                    "timed out",
                )))
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut s = Session {
            io: BufReader::new(Box::new(tcp)),
            caps: Capabilities::default(),
            peer,
            tls: false,
            broken: false,
            command_timeout: cfg.command_timeout,
            data_timeout: cfg.data_timeout,
        };
        // RFC 5321 3.1: a server that does not want us says 554 (or 421).
        let greeting = s
            .read_reply(s.command_timeout)
            .await
            .map_err(OpenError::Plain)?;
        if greeting.code != 220 {
            s.quit().await;
            return Err(OpenError::Plain(greeting));
        }
        s.hello(helo_name).await.map_err(OpenError::Plain)?;
        if tls == OutboundTls::None {
            return Ok(s);
        }
        if !s.caps.starttls {
            if tls == OutboundTls::Required {
                s.quit().await;
                return Err(OpenError::Plain(Reply::new(
                    451,
                    format!("4.7.4 TLS is required but {peer} does not offer STARTTLS"),
                )));
            }
            return Ok(s);
        }
        let r = s.command(b"STARTTLS\r\n").await.map_err(OpenError::Plain)?;
        if r.code != 220 {
            if tls == OutboundTls::Required {
                s.quit().await;
                return Err(OpenError::Plain(r));
            }
            return Ok(s);
        }
        // Anything the server sent before the handshake would be injected
        // plaintext (CVE-2011-0411 style): refuse it.
        if !s.io.buffer().is_empty() {
            return Err(OpenError::Plain(io_reply(
                "STARTTLS with",
                peer,
                "data after the 220 reply",
            )));
        }
        let name = ServerName::try_from(host.to_string())
            .unwrap_or_else(|_| ServerName::IpAddress(peer.ip().into()));
        let plain = std::mem::replace(&mut s.io, BufReader::new(Box::new(tokio::io::empty())));
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        let tls_stream = match timeout(
            s.command_timeout,
            connector.connect(name, plain.into_inner()),
        )
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(OpenError::Tls(io_reply("TLS with", peer, e))),
            Err(_) => return Err(OpenError::Tls(io_reply("TLS with", peer, "timed out"))),
        };
        s.io = BufReader::new(Box::new(tls_stream));
        s.tls = true;
        // RFC 3207 4.2: forget what was learned before TLS; EHLO again.
        s.hello(helo_name).await.map_err(OpenError::Tls)?;
        Ok(s)
    }

    async fn hello(&mut self, name: &str) -> Result<(), Reply> {
        let r = self.command(&client::ehlo(name)).await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&r);
            return Ok(());
        }
        if r.code < 500 {
            self.quit().await;
            return Err(r);
        }
        // RFC 5321 3.2: fall back to HELO when EHLO is not understood.
        let r = self.command(&client::helo(name)).await?;
        if r.code != 250 {
            self.quit().await;
            return Err(r);
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    pub fn reusable(&self) -> bool {
        !self.broken
    }

    pub fn max_size(&self) -> Option<u64> {
        self.caps.size.filter(|&n| n > 0)
    }

    async fn command(&mut self, cmd: &[u8]) -> Result<Reply, Reply> {
        self.write(cmd, self.command_timeout).await?;
        self.read_reply(self.command_timeout).await
    }

    async fn write(&mut self, data: &[u8], limit: Duration) -> Result<(), Reply> {
        let peer = self.peer;
        let io = self.io.get_mut();
        match timeout(limit, async {
            io.write_all(data).await?;
            io.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_reply("writing to", peer, e)),
            Err(_) => Err(io_reply("writing to", peer, "timed out")),
        }
    }

    async fn read_reply(&mut self, limit: Duration) -> Result<Reply, Reply> {
        let peer = self.peer;
        let mut parser = ReplyParser::default();
        let work = async {
            loop {
                let line = read_line(&mut self.io).await?;
                match parser.line(&line) {
                    Ok(Some(r)) => return Ok(r),
                    Ok(None) => {}
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
        };
        match timeout(limit, work).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(io_reply("reading from", peer, e)),
            Err(_) => Err(io_reply("waiting for a reply from", peer, "timed out")),
        }
    }

    /// One transaction; returns each recipient's deciding reply.
    pub async fn send(
        &mut self,
        sender: &str,
        recipients: Vec<String>,
        size: u64,
        body: impl FnOnce() -> Body,
    ) -> Result<Vec<(String, Reply)>, SendError> {
        let (mut t, mut next) = Transaction::start(&self.caps, sender, recipients, size);
        let mut body = Some(body);
        // Fatal before MAIL got its reply: nothing was accepted yet.
        let fail = |t: &Transaction, r: Reply| {
            if t.mail_accepted() {
                SendError::Late(r)
            } else {
                SendError::Early(r)
            }
        };
        let mut wait = self.command_timeout;
        loop {
            match next {
                Next::Send(cmd) => {
                    if let Err(r) = self.write(&cmd, self.command_timeout).await {
                        self.broken = true;
                        return Err(fail(&t, r));
                    }
                }
                Next::Body => {
                    let Some(open) = body.take() else {
                        return Err(SendError::Late(Reply::new(451, "4.3.0 body sent twice")));
                    };
                    if let Err(r) = self.write_body(open()).await {
                        self.broken = true;
                        return Err(SendError::Late(r));
                    }
                    // RFC 5321 4.5.3.2.6: wait long for the reply to the dot.
                    wait = self.data_timeout;
                }
                Next::Read => {}
                Next::Done => break,
            }
            let r = match self.read_reply(wait).await {
                Ok(r) => r,
                Err(r) => {
                    self.broken = true;
                    return Err(fail(&t, r));
                }
            };
            next = t.reply(r);
        }
        if t.needs_reset() {
            let rset = self.command(b"RSET\r\n").await;
            if !rset.is_ok_and(|r| r.code == 250) {
                // Unusable for reuse; outcomes stand.
                self.broken = true;
            }
        }
        Ok(t.outcomes())
    }

    async fn write_body(&mut self, mut body: Body) -> Result<(), Reply> {
        let mut stuffer = client::DotStuffer::default();
        let mut out = Vec::with_capacity(70 * 1024);
        while let Some(chunk) = body.next().await.map_err(|e| {
            tracing::error!(error = %e, "reading a queued message");
            Reply::new(451, "4.3.0 local error reading the queued message")
        })? {
            out.clear();
            stuffer.chunk(&chunk, &mut out);
            self.write(&out, self.command_timeout).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write(&out, self.command_timeout).await
    }

    /// Polite close (RFC 5321 4.1.1.10); errors do not matter here.
    pub async fn quit(&mut self) {
        let _ = self.write(b"QUIT\r\n", Duration::from_secs(5)).await;
        let _ = self.read_reply(Duration::from_secs(5)).await;
        let _ = self.io.get_mut().shutdown().await;
    }
}

/// Open failures; only a failed TLS handshake is retried in plaintext.
enum OpenError {
    Plain(Reply),
    Tls(Reply),
}

impl OpenError {
    fn into_reply(self) -> Reply {
        match self {
            OpenError::Plain(r) | OpenError::Tls(r) => r,
        }
    }
}

/// Reads one line (LF-terminated) of at most MAX_REPLY_LINE octets.
async fn read_line(r: &mut BufReader<Box<dyn Io>>) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if line.len() > MAX_REPLY_LINE + 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply line too long",
            ));
        }
        if done {
            line.pop();
            return Ok(line);
        }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = crate::tls::provider();
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default versions")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate (see the module comment) but still checks the
/// handshake signatures, so the peer must hold the key it presents.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::Read;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A one-connection server: sends `greeting`, then for each step reads
    /// one command (or, for ".", a whole DATA body) and sends the reply.
    /// Returns everything the client sent.
    async fn scripted(
        greeting: &'static str,
        steps: Vec<(&'static str, &'static str)>,
    ) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut r = BufReader::new(tcp);
            let mut seen = String::new();
            r.get_mut().write_all(greeting.as_bytes()).await.unwrap();
            for (expect, reply) in steps {
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap() == 0 {
                        return seen;
                    }
                    seen += &line;
                    if expect != "." || line == ".\r\n" {
                        assert!(line.starts_with(expect), "{line:?} for {expect:?}");
                        break;
                    }
                }
                r.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest).await;
            seen + &rest
        });
        (addr, h)
    }

    fn cfg(tls: OutboundTls) -> OutboundConfig {
        let mut c = Config::embedded_default().outbound;
        c.tls = tls;
        c
    }

    fn body(data: &'static [u8]) -> impl FnOnce() -> Body {
        move || Body::stream(move || Ok(Box::new(data) as Box<dyn Read + Send>))
    }

    #[tokio::test]
    async fn helo_fallback_and_a_sequential_transaction() {
        let (addr, server) = scripted(
            "220 old.test\r\n",
            vec![
                ("EHLO me.test", "502 what?\r\n"),
                ("HELO me.test", "250 old.test\r\n"),
                ("MAIL FROM:<s@be.test>\r\n", "250 ok\r\n"),
                ("RCPT TO:<a@old.test>", "550 5.1.1 no\r\n"),
                ("RCPT TO:<b@old.test>", "250 ok\r\n"),
                ("DATA", "354 go\r\n"),
                (".", "250 queued\r\n"),
                ("QUIT", "221 bye\r\n"),
            ],
        )
        .await;
        let mut s = Session::open(
            addr,
            "old.test",
            "me.test",
            &cfg(OutboundTls::Opportunistic),
        )
        .await
        .unwrap();
        assert!(!s.tls);
        let out = s
            .send(
                "s@be.test",
                vec!["a@old.test".into(), "b@old.test".into()],
                9,
                body(b".x\r\ny"),
            )
            .await
            .unwrap();
        assert_eq!(out[0].1.code, 550);
        assert_eq!(out[1].1.code, 250);
        assert!(s.reusable());
        s.quit().await;
        let seen = server.await.unwrap();
        assert!(seen.contains("DATA\r\n..x\r\ny\r\n.\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn a_refusing_greeting_is_an_error_with_its_reply() {
        let (addr, _server) = scripted("554 go away\r\n", vec![("QUIT", "221 bye\r\n")]).await;
        let err = Session::open(addr, "x.test", "me.test", &cfg(OutboundTls::None))
            .await
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "554 go away");
    }

    #[tokio::test]
    async fn plaintext_injected_after_starttls_is_refused() {
        let (addr, _server) = scripted(
            "220 x.test\r\n",
            vec![
                ("EHLO", "250-x.test\r\n250 STARTTLS\r\n"),
                ("STARTTLS", "220 go ahead\r\n250 injected\r\n"),
            ],
        )
        .await;
        let err = Session::open(addr, "x.test", "me.test", &cfg(OutboundTls::Required))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("data after the 220"), "{err}");
    }

    #[tokio::test]
    async fn required_tls_refuses_a_server_without_starttls() {
        let (addr, _server) = scripted(
            "220 x.test\r\n",
            vec![
                ("EHLO", "250-x.test\r\n250 PIPELINING\r\n"),
                ("QUIT", "221 bye\r\n"),
            ],
        )
        .await;
        let err = Session::open(addr, "x.test", "me.test", &cfg(OutboundTls::Required))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("451 4.7.4"), "{err}");
    }

    #[tokio::test]
    async fn a_body_cut_off_before_its_end_is_never_completed_with_a_dot() {
        let (addr, server) = scripted(
            "220 x.test\r\n",
            vec![
                ("EHLO", "250 x.test\r\n"),
                ("MAIL", "250 ok\r\n"),
                ("RCPT", "250 ok\r\n"),
                ("DATA", "354 go\r\n"),
                (".", "250 queued\r\n"),
            ],
        )
        .await;
        let mut s = Session::open(addr, "x.test", "me.test", &cfg(OutboundTls::None))
            .await
            .unwrap();
        let cut = || Body::cut_off(b"Subject: half\r\n");
        let r = s.send("s@be.test", vec!["a@x.test".into()], 99, cut).await;
        assert!(matches!(r, Err(SendError::Late(_))), "{r:?}");
        assert!(!s.reusable());
        drop(s);
        let seen = server.await.unwrap();
        assert!(
            seen.ends_with("Subject: half\r\n"),
            "no final dot: {seen:?}"
        );
    }
}
