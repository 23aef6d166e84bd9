//! Local delivery: the header lines added on the way into a mailbox.

/// `Return-Path:` of RFC 5321 4.4, from the envelope sender (`""` is `<>`).
pub fn return_path(sender: &str) -> String {
    format!("Return-Path: <{}>\r\n", sanitize(sender))
}

/// Header values must not carry CR/LF or other control octets.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_is_one_clean_line() {
        assert_eq!(return_path(""), "Return-Path: <>\r\n");
        assert_eq!(
            return_path("a@b\r\nBcc: x"),
            "Return-Path: <a@b??Bcc: x>\r\n"
        );
    }
}
