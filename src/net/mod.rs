//! The thin network layer shared by the protocol servers: a stream that may
//! be upgraded to TLS, a line reader bounded by the shared memory budget,
//! and the accept loop.

mod conn;
mod listener;
mod memory;

pub use conn::{Conn, Line, Stream};
pub use listener::accept_loop;
pub use memory::{MemoryBudget, Reservation};
