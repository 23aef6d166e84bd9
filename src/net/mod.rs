//! The thin network layer shared by the protocol servers: a stream that may
//! be upgraded to TLS, a bounded line reader, the accept loop and the PROXY
//! protocol header of a load balancer.

mod conn;
mod listener;
pub mod proxy;

pub use conn::{Conn, Line, Stream};
pub use listener::accept_loop;
