//! Delivery status notifications (RFC 3464): the bounce for recipients that
//! failed for good and the one-time delay warning, as multipart/report
//! (RFC 6522) from MAILER-DAEMON, sent with the null sender `<>` so that a
//! DSN is never answered by another DSN (RFC 5321 6.1).

use crate::store::QueuedMessage;
use std::io::Read;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    /// A warning; delivery is retried until the given time.
    Delay(SystemTime),
}

/// One recipient's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub address: String,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The remote server's reply (or ours), one line.
    pub diagnostic: String,
}

/// The original headers are returned, not the body (RFC 3462
/// text/rfc822-headers); this caps what is read of them.
pub const MAX_HEADERS: usize = 64 * 1024;

/// Reads the header section (up to the empty line) of a stored message.
pub fn read_headers(r: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(MAX_HEADERS as u64).read_to_end(&mut out)?;
    if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
        out.truncate(end + 2);
    } else if let Some(cut) = out.iter().rposition(|&b| b == b'\n') {
        // Headers longer than the cap: keep whole lines only.
        out.truncate(cut + 1);
    }
    Ok(out)
}

fn rfc2822(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t).to_rfc2822()
}

/// The complete DSN message (CRLF), addressed to `msg.sender`.
pub fn build(
    hostname: &str,
    kind: Kind,
    msg: &QueuedMessage,
    entries: &[Entry],
    original_headers: Option<&[u8]>,
    now: SystemTime,
) -> Vec<u8> {
    let boundary = format!("{}/{}", msg.id, hostname);
    let (subject, human, action) = match kind {
        Kind::Failure => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients.\r\n\
             It has been returned with the reasons below; it will not be retried.",
            "failed",
        ),
        Kind::Delay(_) => (
            "Delayed Mail (still being retried)",
            "Your message could not be delivered yet to one or more recipients.\r\n\
             The mail system will keep trying; you do not need to send it again.",
            "delayed",
        ),
    };
    let mut m = String::new();
    m += &format!("From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n");
    m += &format!(
        "To: <{}>\r\n",
        crate::delivery::local::sanitize(&msg.sender)
    );
    m += &format!("Subject: {subject}\r\n");
    m += &format!("Date: {}\r\n", rfc2822(now));
    m += &format!(
        "Message-ID: <{}.{}@{hostname}>\r\n",
        msg.id,
        match kind {
            Kind::Failure => "failure",
            Kind::Delay(_) => "delay",
        }
    );
    // RFC 3834 5: machines must not answer this.
    m += "Auto-Submitted: auto-replied\r\n";
    m += "MIME-Version: 1.0\r\n";
    m += &format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    );
    m += "\r\nThis is a MIME-encapsulated delivery status notification.\r\n";

    m += &format!("\r\n--{boundary}\r\n");
    m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    m += &format!("This is the mail system at {hostname}.\r\n\r\n{human}\r\n\r\n");
    if original_headers.is_none() {
        m += "The queued copy of your message could not be read, so its headers\r\n\
              are not included in this report.\r\n\r\n";
    }
    for e in entries {
        m += &format!("<{}>: {}\r\n", e.address, e.diagnostic);
    }

    // RFC 3464 2.2 per-message fields, 2.3 per-recipient fields.
    m += &format!("\r\n--{boundary}\r\n");
    m += "Content-Type: message/delivery-status\r\n\r\n";
    m += &format!("Reporting-MTA: dns; {hostname}\r\n");
    m += &format!("X-Betomail-Queue-ID: {}\r\n", msg.id);
    m += &format!("Arrival-Date: {}\r\n", rfc2822(msg.created));
    for e in entries {
        m += "\r\n";
        m += &format!("Final-Recipient: rfc822; {}\r\n", e.address);
        m += &format!("Action: {action}\r\n");
        m += &format!("Status: {}\r\n", e.status);
        m += &format!("Diagnostic-Code: smtp; {}\r\n", e.diagnostic);
        if let Kind::Delay(until) = kind {
            m += &format!("Will-Retry-Until: {}\r\n", rfc2822(until));
        }
    }

    // RFC 6522 3: the third part (the returned content) is optional.
    if original_headers.is_some() {
        m += &format!("\r\n--{boundary}\r\n");
        m += "Content-Type: text/rfc822-headers\r\n\r\n";
    }
    let mut out = m.into_bytes();
    if let Some(headers) = original_headers {
        out.extend_from_slice(headers);
        if !headers.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued() -> QueuedMessage {
        QueuedMessage {
            id: "ABC".into(),
            sender: "u@be.test".into(),
            created: SystemTime::now(),
            size: 10,
            warned: false,
            recipients: vec![],
        }
    }

    #[test]
    fn failure_report_has_rfc3464_parts() {
        let msg = queued();
        let headers =
            read_headers(&mut &b"Subject: hi\r\nFrom: u@be.test\r\n\r\nbody\r\n"[..]).unwrap();
        assert_eq!(headers, b"Subject: hi\r\nFrom: u@be.test\r\n");
        let e = Entry {
            address: "x@far.test".into(),
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 no such user".into(),
        };
        let out = String::from_utf8(build(
            "mx.be.test",
            Kind::Failure,
            &msg,
            &[e],
            Some(&headers),
            SystemTime::now(),
        ))
        .unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(out.as_bytes())
            .unwrap();
        assert!(out.contains("report-type=delivery-status"));
        assert!(out.contains("Final-Recipient: rfc822; x@far.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(out.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n"));
        assert_eq!(parsed.parts.len(), 4, "{out}");
        assert!(out.lines().all(|l| !l.ends_with('\r')), "CRLF only");
    }

    #[test]
    fn without_the_message_file_the_report_has_no_headers_part() {
        let msg = queued();
        let e = Entry {
            address: "x@far.test".into(),
            status: "5.3.0".into(),
            diagnostic: "554 5.3.0 queued message file is missing".into(),
        };
        let out = String::from_utf8(build(
            "mx.be.test",
            Kind::Failure,
            &msg,
            &[e],
            None,
            SystemTime::now(),
        ))
        .unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(out.as_bytes())
            .unwrap();
        assert_eq!(parsed.parts.len(), 3, "report without headers: {out}");
        assert!(!out.contains("text/rfc822-headers"), "{out}");
        assert!(out.contains("could not be read, so its headers"), "{out}");
        assert!(out.contains("Status: 5.3.0\r\n"), "{out}");
        assert!(out.ends_with("--\r\n"), "closed multipart: {out}");
    }
}
