//! Placeholder: the POP3 server is being written.

use crate::app::App;
use crate::config::Listener;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn run(_app: Arc<App>, listener: Listener, _tcp: TcpListener) {
    tracing::error!(listener = %listener.name, "pop3 is not built yet");
}
