//! HAProxy's PROXY protocol (v1 text and v2 binary): the header a load
//! balancer sends before the client's first byte, naming the real client.
//! Behind a balancer that client address is what every rule uses (FCrDNS,
//! POP-before-SMTP grants, per-IP limits, throttles, logs, `Received:`).
//!
//! The header is read exactly, never a byte past it, so the protocol
//! session starts on the client's own data. Parsing is the `ppp` crate's.

use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// v2's fixed signature (PROXY protocol spec 2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest line, CRLF included (spec 2.1).
const V1_MAX: usize = 107;
/// TLVs beyond this are refused: HAProxy's own (SSL, unique id, ...) are
/// far smaller, and the header is read before anything limits memory.
const V2_MAX_PAYLOAD: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header too long")]
    TooLong,
}

/// Reads one PROXY header from `stream`. `Ok(Some(addr))` is the client the
/// balancer speaks for; `Ok(None)` is the balancer speaking for itself
/// (v2 LOCAL, v1 UNKNOWN: health checks), so the caller keeps the peer.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    let io = |e: std::io::Error| ProxyError::Malformed(e.to_string());
    // Both versions are at least 12 octets long ("PROXY UNKNOWN\r\n" is 15).
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.map_err(io)?;
    if &head == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await.map_err(io)?;
        let len = u16::from_be_bytes([fixed[2], fixed[3]]) as usize;
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyError::TooLong);
        }
        let mut header = Vec::with_capacity(16 + len);
        header.extend_from_slice(&head);
        header.extend_from_slice(&fixed);
        header.resize(16 + len, 0);
        stream.read_exact(&mut header[16..]).await.map_err(io)?;
        return parse_v2(&header);
    }
    if !head.starts_with(b"PROXY ") {
        return Err(ProxyError::Missing);
    }
    // The line ends at CRLF; read it octet by octet so as not to take any
    // of the client's data with it (v1 is legacy, v2 is the one to use).
    let mut line = head.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyError::TooLong);
        }
        line.push(stream.read_u8().await.map_err(io)?);
    }
    parse_v1(&line)
}

fn parse_v2(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::v2::{Addresses, Command, Header};
    let h = Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if h.command == Command::Local {
        return Ok(None);
    }
    match h.addresses {
        Addresses::IPv4(a) => Ok(Some((a.source_address, a.source_port).into())),
        Addresses::IPv6(a) => Ok(Some((a.source_address, a.source_port).into())),
        // A stream proxied for a local socket or of no stated family: the
        // balancer gives no client address to use.
        Addresses::Unspecified | Addresses::Unix(_) => Ok(None),
    }
}

fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::v1::{Addresses, Header};
    let h = Header::try_from(line).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    match h.addresses {
        Addresses::Tcp4(a) => Ok(Some((a.source_address, a.source_port).into())),
        Addresses::Tcp6(a) => Ok(Some((a.source_address, a.source_port).into())),
        Addresses::Unknown => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Feeds `bytes` and returns what the header read, and what is left for
    /// the protocol session.
    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let result = read_header(&mut server).await;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        (result, rest)
    }

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    #[tokio::test]
    async fn v1_tcp4_tcp6_and_unknown_leave_the_session_data() {
        let (r, rest) = read(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 110\r\nUSER a\r\n").await;
        assert_eq!(r, Ok(Some("127.0.0.2:40000".parse().unwrap())));
        assert_eq!(rest, b"USER a\r\n");
        let (r, _) = read(b"PROXY TCP6 2001:db8::7 ::1 5 25\r\nEHLO x\r\n").await;
        assert_eq!(r, Ok(Some("[2001:db8::7]:5".parse().unwrap())));
        let (r, rest) = read(b"PROXY UNKNOWN\r\nQUIT\r\n").await;
        assert_eq!(r, Ok(None));
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[tokio::test]
    async fn v2_proxy_local_and_tlvs() {
        let ipv4 = [127, 0, 0, 3, 127, 0, 0, 1, 0x9c, 0x40, 0, 110];
        let noop_tlv = [0x04, 0x00, 0x02, 0xAA, 0xBB];
        let mut bytes = v2(1, 0x11, &ipv4, &noop_tlv);
        bytes.extend_from_slice(b"CAPA\r\n");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r, Ok(Some("127.0.0.3:40000".parse().unwrap())));
        assert_eq!(rest, b"CAPA\r\n");
        let mut ipv6 = vec![0u8; 36];
        ipv6[15] = 1; // ::1 as the source
        ipv6[32..34].copy_from_slice(&25u16.to_be_bytes());
        let (r, _) = read(&v2(1, 0x21, &ipv6, &[])).await;
        assert_eq!(r, Ok(Some("[::1]:25".parse().unwrap())));
        // A health check of the balancer itself.
        let (r, rest) = read(&[v2(0, 0x00, &[], &[]), b"x".to_vec()].concat()).await;
        assert_eq!(r, Ok(None));
        assert_eq!(rest, b"x");
    }

    #[tokio::test]
    async fn missing_malformed_and_oversized_headers_are_refused() {
        assert_eq!(
            read(b"EHLO client.example\r\n").await.0,
            Err(ProxyError::Missing)
        );
        assert_eq!(read(b"USER btm0001\r\n").await.0, Err(ProxyError::Missing));
        assert!(matches!(
            read(b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n").await.0,
            Err(ProxyError::Malformed(_))
        ));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(read(long.as_bytes()).await.0, Err(ProxyError::TooLong));
        let mut big = v2(1, 0x11, &[0; 12], &[]);
        big[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(read(&big).await.0, Err(ProxyError::TooLong));
        // Truncated: the connection ends inside the header.
        assert!(matches!(
            read(&v2(1, 0x11, &[127, 0, 0, 1], &[])).await.0,
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            read(b"PROXY TCP4 127.0.0.1").await.0,
            Err(ProxyError::Malformed(_))
        ));
    }
}
