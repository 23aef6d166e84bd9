//! The POP3 service (RFC 1939, 2449, 3206, 2595, 5034).

pub mod server;
