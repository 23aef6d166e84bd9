//! One client IP cannot take all of a listener's connections: past
//! `max_connections_per_ip` it gets the protocol's refusal at once, while
//! other hosts and exempt networks are served.

mod common;
use common::*;

#[test]
fn per_ip_limit_refuses_the_extra_connection_only() {
    let s = TestServer::start(
        "[limits]\nmax_connections_per_ip = 2\nconnection_limit_exempt = [\"127.0.0.4/32\"]\n",
        LISTENERS,
    );
    let pop = s.addr("pop2");
    let mut held: Vec<Client> = (0..2)
        .map(|_| Client::connect_from("127.0.0.2", pop))
        .collect();
    for c in &mut held {
        assert!(c.line().starts_with("+OK"));
    }
    let mut extra = Client::connect_from("127.0.0.2", pop);
    assert_eq!(
        extra.line(),
        "-ERR [SYS/TEMP] Too many connections from your address"
    );
    assert!(extra.closed());
    // Another host, and an exempt one, are served meanwhile.
    assert!(Client::connect_from("127.0.0.3", pop)
        .line()
        .starts_with("+OK"));
    let exempt: Vec<Client> = (0..3)
        .map(|_| Client::connect_from("127.0.0.4", pop))
        .collect();
    for mut c in exempt {
        assert!(c.line().starts_with("+OK"));
    }

    let mx = s.addr("mx");
    let mut smtp: Vec<Client> = (0..2)
        .map(|_| Client::connect_from("127.0.0.2", mx))
        .collect();
    for c in &mut smtp {
        assert!(c.line().starts_with("220"));
    }
    assert_eq!(
        Client::connect_from("127.0.0.2", mx).line(),
        "421 4.7.0 Too many connections from your address"
    );

    // A slot frees when its connection ends.
    held.pop().unwrap().cmd("QUIT");
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        Client::connect_from("127.0.0.2", pop)
            .line()
            .starts_with("+OK")
    }));
}

/// Under a low hard open-file limit the server keeps descriptors for
/// refusing politely and for storing mail: once clients fill its share, a
/// new SMTP or POP3 client is refused at once (not left hanging without a
/// greeting), a message in progress is still stored, and a freed slot is
/// given out again.
#[test]
fn near_the_open_file_limit_clients_are_refused_and_mail_is_stored() {
    let s = TestServer::start_with_fd_limit("", LISTENERS, 256);
    s.add_user("btm0001", "pw");
    let (mx, pop) = (s.addr("mx"), s.addr("pop2"));
    let mut tx = Client::connect(mx);
    assert!(tx.line().starts_with("220"));
    tx.send("EHLO client.test\r\n");
    tx.smtp_reply();
    assert!(tx.cmd("MAIL FROM:<x@remote.test>").starts_with("250"));
    assert!(tx.cmd("RCPT TO:<btm0001@be.test>").starts_with("250"));
    assert!(tx.cmd("DATA").starts_with("354"));
    tx.send("Subject: held\r\n\r\nwritten while the server is full\r\n");

    let greeting = |c: &mut Client| {
        c.stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        c.line()
    };
    let mut held = Vec::new();
    let refusal = loop {
        assert!(held.len() < 300, "no refusal after {} clients", held.len());
        let mut c = Client::connect(mx);
        let first = greeting(&mut c);
        assert!(!first.is_empty(), "client {} got no greeting", held.len());
        if !first.starts_with("220") {
            break first;
        }
        held.push(c);
    };
    eprintln!("refused after {} idle clients", held.len());
    assert_eq!(refusal, "421 4.3.2 Too many connections, try again later");
    assert_eq!(
        greeting(&mut Client::connect(pop)),
        "-ERR [SYS/TEMP] Too many connections, try again later"
    );
    assert!(tx.cmd(".").starts_with("250 "));
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 1);
    drop(held.pop());
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        greeting(&mut Client::connect(mx)).starts_with("220")
    }));
    assert!(s.logged("fewer than the 140000 that the listeners"));
    assert!(s.logged("new clients refused"));
}

/// An open-file limit that leaves no descriptor for clients stops `serve`
/// at start, naming the keys that take them.
#[test]
fn an_open_file_limit_too_low_for_any_client_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("betomail.toml");
    let data = dir.path().join("data");
    std::fs::write(&config, format!("data_dir = {data:?}\n{LISTENERS}")).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    limit_open_files(&mut cmd, 150);
    let mut child = cmd.spawn().unwrap();
    let exited = wait_until(std::time::Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(exited && !out.status.success(), "serve kept running: {err}");
    assert!(
        err.contains("`limits.reserved_fds` and `outbound.max_connections`"),
        "{err}"
    );
}
