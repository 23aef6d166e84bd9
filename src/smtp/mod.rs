//! The SMTP service (RFC 5321 and its ESMTP extensions).

pub mod server;
