//! A client connection: plain TCP or TLS (implicit or after STLS/STARTTLS),
//! with a line reader whose memory is bounded by the caller's line limit
//! and, beyond a small base, drawn from the shared [`MemoryBudget`].

use super::memory::{MemoryBudget, Reservation};
use bytes::{Buf, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One line read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The line without its terminator; `bare_lf` when it ended in LF alone.
    Complete { bytes: BytesMut, bare_lf: bool },
    /// Longer than the limit: the excess up to the next LF is discarded.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
    /// The memory budget cannot hold the rest of this line: its input is
    /// dropped, and the session should end with a temporary error.
    NoMemory,
}

pub struct Conn {
    stream: Option<Stream>,
    rbuf: BytesMut,
    /// What `rbuf`'s allocation takes from the budget beyond [`BASE`].
    memory: Reservation,
    /// Still inside an overlong line: drop input up to its LF.
    skipping: bool,
    /// The last read filled its chunk: read the next in bulk.
    streaming: bool,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// After a failed TLS handshake the socket is gone.
fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
}

/// Read size; idle connections hold no more than this.
const READ_CHUNK: usize = 1024;
/// Read size while a client streams (SMTP DATA): the last read filled its
/// chunk, so more is waiting. Tiny reads there cost a wake-up per KB.
const BULK_CHUNK: usize = 16 * READ_CHUNK;
/// Buffer octets a connection has without the budget: a partial line of up
/// to one read chunk plus the next read, so commands never wait on it. A
/// connection's buffer never exceeds its line limit + 1 + [`BULK_CHUNK`].
const BASE: usize = 2 * READ_CHUNK;

impl Conn {
    pub fn new(tcp: TcpStream, peer: SocketAddr, budget: Arc<MemoryBudget>) -> Conn {
        let local = tcp.local_addr().unwrap_or(peer);
        let _ = tcp.set_nodelay(true);
        Conn {
            stream: Some(Stream::Plain(tcp)),
            rbuf: BytesMut::new(),
            memory: Reservation::new(budget),
            skipping: false,
            streaming: false,
            peer,
            local,
        }
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(closed)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    /// The negotiated TLS version and cipher, for Received headers.
    pub fn tls_info(&self) -> Option<String> {
        match &self.stream {
            Some(Stream::Tls(s)) => {
                let (_, c) = s.get_ref();
                Some(format!(
                    "{} {}",
                    c.protocol_version()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_default(),
                    c.negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite()))
                        .unwrap_or_default()
                ))
            }
            _ => None,
        }
    }

    /// Bytes the client sent that were not read yet (pipelining).
    pub fn has_buffered_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// Reads one line of at most `max` octets (terminator excluded).
    pub async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.rbuf) {
                if self.skipping {
                    self.rbuf.advance(pos + 1);
                    self.skipping = false;
                    continue;
                }
                let mut line = self.rbuf.split_to(pos + 1);
                line.truncate(pos);
                let bare_lf = line.last() != Some(&b'\r');
                if !bare_lf {
                    line.truncate(pos - 1);
                }
                if self.rbuf.is_empty() && self.memory.held() > 0 {
                    self.drop_buffer();
                }
                if line.len() > max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete {
                    bytes: line,
                    bare_lf,
                });
            }
            if self.skipping {
                self.rbuf.clear();
            } else if self.rbuf.len() > max + 1 {
                self.drop_buffer();
                self.skipping = true;
                return Ok(Line::TooLong);
            }
            let chunk = if self.streaming {
                BULK_CHUNK
            } else {
                READ_CHUNK
            };
            if !self.make_room(chunk, max) {
                self.drop_buffer();
                return Ok(Line::NoMemory);
            }
            let stream = self.stream.as_mut().ok_or_else(closed)?;
            let n = stream.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Ok(Line::Eof);
            }
            self.streaming = n >= chunk;
        }
    }

    /// Room to read `want` octets after the partial line in `rbuf` (at most
    /// `max` + 1 octets). A new buffer is allocated at exactly the size the
    /// budget covers; false when it cannot cover even one small read.
    fn make_room(&mut self, want: usize, max: usize) -> bool {
        let len = self.rbuf.len();
        if self.rbuf.capacity() - len >= want {
            return true;
        }
        // Doubling keeps the copies of a growing line linear in its length;
        // a small read is the fallback when the budget is short.
        let grown = (len + want).max(2 * len).min(max + 1 + want);
        for size in [grown, len + READ_CHUNK] {
            if self.memory.resize(size.saturating_sub(BASE)) {
                let mut buf = BytesMut::with_capacity(size);
                buf.extend_from_slice(&self.rbuf);
                self.rbuf = buf;
                return true;
            }
        }
        false
    }

    /// Frees the read buffer (its content is discarded) and its budget.
    fn drop_buffer(&mut self) {
        self.rbuf = BytesMut::new();
        self.memory.release();
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let stream = self.stream()?;
        stream.write_all(data).await?;
        stream.flush().await
    }

    /// Writes without flushing (for streaming a message in chunks).
    pub async fn write_buffered(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream()?.write_all(data).await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream()?.flush().await
    }

    /// STLS / STARTTLS: the handshake on the same socket. Input the client
    /// pipelined after the command is discarded (RFC 3207 4, RFC 2595 4):
    /// it was sent in the clear and must not be taken as protected.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        self.drop_buffer();
        self.skipping = false;
        match self.stream.take() {
            Some(Stream::Plain(tcp)) => {
                let tls = acceptor.accept(tcp).await?;
                self.stream = Some(Stream::Tls(Box::new(tls)));
                Ok(())
            }
            other => {
                self.stream = other;
                Err(io::Error::other("TLS is already active"))
            }
        }
    }

    pub async fn shutdown(&mut self) {
        if let Ok(s) = self.stream() {
            let _ = s.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair_with(budget: Arc<MemoryBudget>) -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        (Conn::new(server, peer, budget), client)
    }

    async fn pair() -> (Conn, TcpStream) {
        pair_with(MemoryBudget::new(64 << 20)).await
    }

    #[tokio::test]
    async fn lines_crlf_bare_lf_too_long_eof() {
        let (mut conn, mut client) = pair().await;
        client
            .write_all(b"USER a\r\nNOOP\nxxxxxxxxxxxxxxxxxxxx\r\nQUIT\r\npartial")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let line = |s: &str, bare_lf| Line::Complete {
            bytes: BytesMut::from(s),
            bare_lf,
        };
        assert_eq!(conn.read_line(10).await.unwrap(), line("USER a", false));
        assert_eq!(conn.read_line(10).await.unwrap(), line("NOOP", true));
        assert_eq!(conn.read_line(10).await.unwrap(), Line::TooLong);
        assert_eq!(conn.read_line(10).await.unwrap(), line("QUIT", false));
        assert_eq!(conn.read_line(10).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn overlong_line_memory_is_bounded() {
        let (mut conn, mut client) = pair().await;
        let writer = tokio::spawn(async move {
            let junk = vec![b'x'; 64 * 1024];
            for _ in 0..32 {
                client.write_all(&junk).await.unwrap();
            }
            client.write_all(b"\r\nNOOP\r\n").await.unwrap();
        });
        assert_eq!(conn.read_line(100).await.unwrap(), Line::TooLong);
        assert!(conn.rbuf.capacity() < 256 * 1024);
        assert_eq!(
            conn.read_line(100).await.unwrap(),
            Line::Complete {
                bytes: BytesMut::from("NOOP"),
                bare_lf: false
            }
        );
        assert!(conn.rbuf.capacity() < 256 * 1024);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn long_lines_draw_from_the_budget_short_ones_never_wait() {
        let none = MemoryBudget::new(0);
        let (mut conn, mut client) = pair_with(none.clone()).await;
        // A command split over two reads needs no budget; a long line does.
        client.write_all(b"NO").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            client.write_all(b"OP\r\n").await.unwrap();
            client.write_all(&[b'x'; 3000]).await.unwrap();
            client
        });
        assert_eq!(
            conn.read_line(4096).await.unwrap(),
            Line::Complete {
                bytes: BytesMut::from("NOOP"),
                bare_lf: false
            }
        );
        assert_eq!(conn.read_line(4096).await.unwrap(), Line::NoMemory);
        assert_eq!(none.used(), 0);
        drop(writer.await.unwrap());

        // Two long lines do not both fit: the second reader is told so.
        let budget = MemoryBudget::new(40 * 1024);
        let (mut a, mut a_client) = pair_with(budget.clone()).await;
        let (mut b, mut b_client) = pair_with(budget.clone()).await;
        let long = vec![b'y'; 30 * 1024];
        a_client.write_all(&long).await.unwrap();
        b_client.write_all(&long).await.unwrap();
        let wait = std::time::Duration::from_millis(300);
        assert!(tokio::time::timeout(wait, a.read_line(MAX)).await.is_err());
        assert!(budget.used() >= 28 * 1024 && budget.used() <= 40 * 1024);
        assert_eq!(b.read_line(MAX).await.unwrap(), Line::NoMemory);
        a_client.write_all(b"\r\n").await.unwrap();
        match a.read_line(MAX).await.unwrap() {
            Line::Complete { bytes, .. } => assert_eq!(bytes.len(), long.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(budget.used(), 0);
    }

    const MAX: usize = 64 * 1024;
}
