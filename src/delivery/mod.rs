//! Getting accepted mail to where it goes: local mailboxes (`local`) and
//! remote hosts through the queue (`outbound`).

pub mod local;
pub mod outbound;
pub mod queue_cli;
