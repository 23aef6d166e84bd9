//! Getting accepted mail to where it goes: local mailboxes (`local`) and
//! remote hosts through the queue (`outbound`, with `route`, `transport`
//! over the sans-IO `client` sending a `body`, `pool`, and `settle` + `dsn` for outcomes
//! and bounces).

pub mod body;
pub mod client;
pub mod dsn;
pub mod local;
pub mod outbound;
pub mod pool;
pub mod queue_cli;
pub mod route;
pub mod settle;
pub mod transport;
