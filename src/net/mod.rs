//! The thin network layer shared by the protocol servers: a stream that may
//! be upgraded to TLS, a line reader bounded by the shared memory budget,
//! the accept loop, the file-descriptor budget and the PROXY protocol
//! header of a load balancer.

mod conn;
mod fds;
mod listener;
mod memory;
pub mod proxy;

pub use conn::{Conn, Line, Stream};
pub use fds::{open_now, raise_nofile_limit, FdBudget, FdPlan, FdSlot};
pub use listener::{accept_loop, Refusals};
pub use memory::{MemoryBudget, Reservation};
