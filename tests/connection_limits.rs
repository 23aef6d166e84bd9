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
