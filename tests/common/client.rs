//! A line-oriented TCP client for raw protocol tests (the POP3 and SMTP
//! specifics are in `pop3.rs` and `smtp.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A TCP connection from a chosen loopback source address (127.0.0.x plays
/// a different client host).
pub fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{source}:0").parse().unwrap();
    sock.bind(&src.into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// A line-oriented client for raw protocol tests.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(to: SocketAddr) -> Client {
        Self::connect_from("127.0.0.1", to)
    }

    pub fn connect_from(source: &str, to: SocketAddr) -> Client {
        let stream = connect_from(source, to);
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// One reply line, without CRLF ("" at EOF).
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.reader.read_until(b'\n', &mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }

    pub fn send(&mut self, data: &str) {
        self.stream.write_all(data.as_bytes()).unwrap();
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
    }

    /// Sends `cmd` + CRLF and returns the first reply line.
    pub fn cmd(&mut self, cmd: &str) -> String {
        self.send(&format!("{cmd}\r\n"));
        self.line()
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}
