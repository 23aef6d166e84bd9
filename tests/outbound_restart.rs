//! Durability across restarts and connection reuse of the queue runner.

mod common;
mod outbound_util;
use common::*;
use outbound_util::*;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// Queues the `n`th numbered test message for `to`.
fn inject_nth(s: &TestServer, to: &str, n: usize) -> String {
    let msg = format!("Subject: message {n}\n\nbody {n}\n");
    inject(s, "u@be.test", &[to], msg.as_bytes())
}

#[test]
fn a_restart_in_the_middle_of_the_retry_schedule_loses_and_repeats_nothing() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.31",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.31", port, &["--tempfail", "1"]);
    let mut s = TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nretry_schedule = [\"3s\"]\n",
            dns.config(1000)
        ),
        ONE_LISTENER,
    );
    let id = inject_nth(&s, "a@far.test", 1);
    assert!(wait_until(Duration::from_secs(10), || {
        let out = s.cli(&["queue", "show", &id], b"");
        String::from_utf8_lossy(&out.stdout).contains("attempts 1")
    }));
    s.kill();
    assert!(sink.messages().is_empty());
    s.restart();
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert!(String::from_utf8_lossy(&got[0].1).contains("body 1"));
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sink.messages().len(), 1, "sent exactly once");
}

#[test]
fn messages_queued_while_stopped_are_sent_after_start_over_one_connection() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.32",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.32", port, &[]);
    let mut s = TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nmax_per_destination = 1\n",
            dns.config(1000)
        ),
        ONE_LISTENER,
    );
    s.kill();
    for n in 0..5 {
        inject_nth(&s, &format!("r{n}@far.test"), n);
    }
    s.restart();
    let got = sink.wait_for(5, Duration::from_secs(15));
    assert_eq!(got.len(), 5, "log:\n{}", s.log_text());
    let peers: std::collections::HashSet<String> =
        got.iter().map(|(e, _)| e["peer"].to_string()).collect();
    assert_eq!(peers.len(), 1, "one reused connection: {peers:?}");
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn with_one_connection_allowed_an_idle_session_makes_room_for_another_host() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=a.test,mx.a.test,10",
            "host-record=mx.a.test,127.0.0.33",
            "mx-host=b.test,mx.b.test,10",
            "host-record=mx.b.test,127.0.0.34",
        ],
        &[],
    );
    let sink_a = SmtpSink::start("127.0.0.33", port, &[]);
    let sink_b = SmtpSink::start("127.0.0.34", port, &[]);
    let mut s = TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nmax_connections = 1\n",
            dns.config(1000)
        ),
        ONE_LISTENER,
    );
    s.kill();
    for n in 0..3 {
        inject_nth(&s, &format!("r{n}@a.test"), n);
        inject_nth(&s, &format!("r{n}@b.test"), n);
    }
    s.restart();
    // Without closing idle sessions early, a switch of host waits for the
    // idle timeout (5 s); with it, all six take milliseconds.
    let all = wait_until(Duration::from_secs(4), || {
        sink_a.messages().len() == 3 && sink_b.messages().len() == 3
    });
    assert!(all, "log:\n{}", s.log_text());
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

/// An SMTP server on `addr:port` that takes one message and never answers
/// its final dot; `dot` is told when the dot arrived.
fn silent_after_data(
    addr: &str,
    port: u16,
    dot: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<()> {
    let listener = std::net::TcpListener::bind((addr, port)).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let _ = w.write_all(b"220 silent.test ESMTP\r\n");
        let mut in_data = false;
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let cmd = line.to_ascii_uppercase();
            let reply: &[u8] = if in_data {
                if line == ".\r\n" {
                    let _ = dot.send(());
                }
                b""
            } else if cmd.starts_with("EHLO") {
                b"250-silent.test\r\n250 8BITMIME\r\n"
            } else if cmd.starts_with("DATA") {
                in_data = true;
                b"354 go ahead\r\n"
            } else {
                b"250 ok\r\n"
            };
            let _ = w.write_all(reply);
            line.clear();
        }
    })
}

#[test]
fn a_delivery_cut_off_by_sigterm_stays_pending_and_is_sent_after_restart() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.36",
        ],
        &[],
    );
    let (dot_tx, dot_rx) = std::sync::mpsc::channel();
    let silent = silent_after_data("127.0.0.36", port, dot_tx);
    let mut s = TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nretry_schedule = [\"1s\"]\n",
            dns.config(1000)
        ),
        ONE_LISTENER,
    );
    let id = inject_nth(&s, "a@far.test", 1);
    dot_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the whole message was sent");
    // SIGTERM while waiting for the reply to the dot: the outcome is unknown.
    s.stop();
    let out = s.cli(&["queue", "show", &id], b"");
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(
        show.contains("a@far.test\tpending\tattempts 0\t"),
        "nothing recorded:\n{show}"
    );
    silent.join().unwrap();
    let sink = SmtpSink::start("127.0.0.36", port, &[]);
    s.restart();
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert!(String::from_utf8_lossy(&got[0].1).contains("body 1"));
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}
