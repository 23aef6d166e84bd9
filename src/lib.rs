//! betomail: an ISP mail system (POP3, SMTP AUTH, POP-before-SMTP, MX, an
//! outbound queue and a web portal) in one binary.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod net;
pub mod pop3;
pub mod ready;
pub mod server;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod web;
