//! SMTP client helpers.

use crate::common::Client;

impl Client {
    /// An SMTP reply: all its lines, the last without '-'.
    pub fn smtp_reply(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            let more = l.as_bytes().get(3) == Some(&b'-');
            out.push(l);
            if !more {
                return out;
            }
        }
    }
}
