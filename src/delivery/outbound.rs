//! Placeholder: the queue runner is being written.

use crate::app::App;
use std::sync::Arc;

pub async fn run(_app: Arc<App>) {}
