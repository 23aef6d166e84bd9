//! The POP3 service (RFC 1939, 2449, 3206, 2595, 5034): a parser, a sans-IO
//! session state machine, and the network loop that performs its effects.

pub mod command;
mod dotstuff;
mod lock;
pub mod server;
pub mod session;
