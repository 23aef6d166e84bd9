//! Byte-stuffing of a stored (CRLF) message for RETR and TOP, one chunk at
//! a time so a message is never held whole in memory (RFC 1939 3: a line
//! starting with "." gets another "."; the response ends with ".").

use memchr::memmem;

#[derive(Debug, Clone, Copy)]
enum Top {
    /// RETR: everything.
    All,
    /// TOP: still in the header.
    Header(u32),
    /// TOP: this many body lines left.
    Body(u32),
}

pub struct Stuffer {
    at_line_start: bool,
    /// The current line has more than its CR/LF (TOP's blank-line test).
    line_has_text: bool,
    top: Top,
}

impl Stuffer {
    /// `top`: None for RETR, Some(n) for TOP's n body lines.
    pub fn new(top: Option<u32>) -> Stuffer {
        Stuffer {
            at_line_start: true,
            line_has_text: false,
            top: top.map_or(Top::All, Top::Header),
        }
    }

    /// Appends the stuffed form of `input` to `out`; true when TOP has sent
    /// all it should (the rest of the message is not needed).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if input.is_empty() {
            return self.done();
        }
        if let Top::All = self.top {
            // Fast path: copy runs between "\n." occurrences.
            let mut start = 0;
            if self.at_line_start && input[0] == b'.' {
                out.push(b'.');
            }
            for pos in memmem::find_iter(input, b"\n.") {
                out.extend_from_slice(&input[start..=pos]);
                out.push(b'.');
                start = pos + 1;
            }
            out.extend_from_slice(&input[start..]);
            self.at_line_start = input.last() == Some(&b'\n');
            return false;
        }
        for &b in input {
            if self.done() {
                return true;
            }
            if self.at_line_start {
                if b == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
                self.line_has_text = false;
            }
            out.push(b);
            if b == b'\n' {
                self.at_line_start = true;
                self.top = match self.top {
                    Top::Header(n) if !self.line_has_text => Top::Body(n),
                    Top::Body(n) => Top::Body(n.saturating_sub(1)),
                    t => t,
                };
            } else if b != b'\r' {
                self.line_has_text = true;
            }
        }
        self.done()
    }

    fn done(&self) -> bool {
        matches!(self.top, Top::Body(0)) && self.at_line_start
    }

    /// Ends the response: a CRLF if the message lacked a final one, then ".".
    pub fn finish(&self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `msg` in chunks of every size and checks each gives `want`.
    fn check(msg: &[u8], top: Option<u32>, want: &[u8]) {
        for chunk in 1..=msg.len().max(1) {
            let mut s = Stuffer::new(top);
            let mut out = Vec::new();
            for part in msg.chunks(chunk) {
                if s.feed(part, &mut out) {
                    break;
                }
            }
            s.finish(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(want),
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn retr_stuffs_leading_dots() {
        check(
            b".a\r\nb\r\n..c\r\n.\r\nd.\r\n",
            None,
            b"..a\r\nb\r\n...c\r\n..\r\nd.\r\n.\r\n",
        );
        check(b"", None, b".\r\n");
        check(b"no final crlf", None, b"no final crlf\r\n.\r\n");
    }

    #[test]
    fn top_sends_header_and_n_lines() {
        let msg = b"Subject: x\r\nFrom: y\r\n\r\n.one\r\ntwo\r\nthree\r\n";
        check(msg, Some(0), b"Subject: x\r\nFrom: y\r\n\r\n.\r\n");
        check(
            msg,
            Some(2),
            b"Subject: x\r\nFrom: y\r\n\r\n..one\r\ntwo\r\n.\r\n",
        );
        check(
            msg,
            Some(10),
            b"Subject: x\r\nFrom: y\r\n\r\n..one\r\ntwo\r\nthree\r\n.\r\n",
        );
        // A header without a body.
        check(b"Subject: x\r\n", Some(3), b"Subject: x\r\n.\r\n");
    }
}
