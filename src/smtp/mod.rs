//! The SMTP service (RFC 5321 and its ESMTP extensions): MX, SMTP AUTH
//! submission and POP-before-SMTP relay, by listener configuration.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;
