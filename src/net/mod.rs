//! The thin network layer shared by the protocol servers: a stream that may
//! be upgraded to TLS, a bounded line reader, and the accept loop.

mod conn;
mod listener;

pub use conn::{Conn, Line, Stream};
pub use listener::accept_loop;
