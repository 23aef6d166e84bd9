//! The portal's DNS check page and `GET /api/dns-check` (SEED-16) against a
//! real DNS server: a matching, a mismatching and a no-PTR client, seen both
//! as the visitor's own address (requests from 127.0.0.x) and via `?ip=`.

mod common;
use common::*;

fn records() -> Vec<&'static str> {
    vec![
        "host-record=good.test,127.0.0.2",
        "ptr-record=3.0.0.127.in-addr.arpa,bad.test",
        "address=/bad.test/127.0.0.99",
        "ptr-record=4.0.0.127.in-addr.arpa,noa.test",
    ]
}

fn server() -> (TestServer, Dnsmasq) {
    web_server_with("", LISTENERS, &records())
}

fn api(b: &mut Browser, query: &str) -> (u16, serde_json::Value) {
    let r = b.get(&format!("/api/dns-check{query}"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    (r.status, serde_json::from_str(&r.body).unwrap())
}

fn from(s: &TestServer, source: &str) -> Browser {
    let mut b = Browser::new(s.addr("web"));
    b.source = Some(source.into());
    b
}

#[test]
fn matching_host_passes() {
    let (s, _d) = server();
    let mut b = from(&s, "127.0.0.2");
    let (status, v) = api(&mut b, "");
    assert_eq!(status, 200);
    assert_eq!(
        v,
        serde_json::json!({
            "ip": "127.0.0.2", "ptr": ["good.test"], "forward": {"good.test": ["127.0.0.2"]},
            "verdict": "pass", "refused": false,
            "reason": "127.0.0.2 has reverse name good.test, which resolves back to 127.0.0.2"
        })
    );
    let page = b.get("/dns-check?lang=ja").body;
    assert!(page.contains("<div class=\"big\">127.0.0.2</div>"));
    assert!(page.contains("問題ありません"));
    assert!(page.contains("good.test") && page.contains("一致"));
    assert!(
        page.contains("プロキシサーバー"),
        "the seed's proxy warning"
    );
    assert!(!page.contains("修正してほしい"));
}

#[test]
fn mismatching_host_is_refused_with_what_to_ask() {
    let (s, _d) = server();
    let mut b = from(&s, "127.0.0.3");
    let (_, v) = api(&mut b, "");
    assert_eq!(v["verdict"], "mismatch");
    assert_eq!(v["refused"], true);
    assert_eq!(v["forward"]["bad.test"][0], "127.0.0.99");

    let ja = b.get("/dns-check?lang=ja").body;
    assert!(ja.contains("POPサーバーに接続を拒否されます"));
    assert!(ja.contains("127.0.0.3 の逆引き名は bad.test ですが"));
    assert!(ja.contains("「DNSの正引きと逆引きが一致していないので、修正してほしい。」"));
    assert!(ja.contains("接続を拒否します"));
    let en = b.get("/dns-check?lang=en").body;
    assert!(en.contains("The POP servers refuse this address"));
    assert!(en.contains("do not match; please fix them"));
    assert!(en.contains("127.0.0.99"));

    // The same through ?ip= from another visitor, and the POP server agrees.
    let mut other = from(&s, "127.0.0.2");
    let page = other.get("/dns-check?ip=127.0.0.3&lang=en").body;
    assert!(page.contains("The IP address checked") && page.contains("refused"));
    let mut pop = Client::connect_from("127.0.0.3", s.addr("pop"));
    let greeting = pop.line();
    assert!(greeting.starts_with("-ERR [SYS/PERM]"), "{greeting}");
    assert!(greeting.contains("/dns-check"), "{greeting}");

    let (_, v) = api(&mut other, "?ip=127.0.0.4");
    assert_eq!(v["verdict"], "no-forward");
    assert_eq!(v["refused"], true);
}

#[test]
fn host_without_ptr_is_let_in() {
    let (s, _d) = server();
    let mut b = from(&s, "127.0.0.5");
    let (_, v) = api(&mut b, "");
    assert_eq!(v["verdict"], "no-ptr");
    assert_eq!(v["refused"], false);
    assert_eq!(v["ptr"], serde_json::json!([]));
    let page = b.get("/dns-check?lang=en").body;
    assert!(page.contains("No reverse DNS, but you can receive mail"));
    assert!(page.contains("allowed"));
}

#[test]
fn bad_and_ipv6_input() {
    let (s, _d) = server();
    let mut b = Browser::new(s.addr("web"));
    for bad in [
        "nonsense",
        "300.1.2.3",
        "1.2.3",
        "%3Cscript%3E",
        "127.0.0.1%00",
        "::ffff:zz",
    ] {
        let (status, v) = api(&mut b, &format!("?ip={bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(v["error"].as_str().unwrap().contains("not an IPv4 or IPv6"));
        let page = b.get(&format!("/dns-check?ip={bad}"));
        assert_eq!(page.status, 400, "{bad}");
        assert!(!page.body.contains("<script>"));
    }
    // Empty ip: the visitor's own address.
    let (status, v) = api(&mut b, "?ip=");
    assert_eq!(status, 200);
    assert_eq!(v["ip"], "127.0.0.1");
    // IPv6, bracketed or not, and IPv4-mapped (checked as IPv4).
    let (status, v) = api(&mut b, "?ip=%5B2001%3Adb8%3A%3A1%5D");
    assert_eq!(status, 200);
    assert_eq!(v["ip"], "2001:db8::1");
    assert!(v["verdict"].is_string());
    let (_, v) = api(&mut b, "?ip=::ffff:127.0.0.3");
    assert_eq!(v["ip"], "127.0.0.3");
    assert_eq!(v["verdict"], "mismatch");
    let page = b.get("/dns-check?ip=2001:db8::1&lang=en");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("2001:db8::1"));
}

#[test]
fn ipv6_visitor() {
    let listeners = format!(
        "{LISTENERS}\n[[listener]]\nname = \"web6\"\nprotocol = \"http\"\nbind = \"[::1]:0\"\n"
    );
    let (s, _d) = web_server_with("", &listeners, &records());
    let mut b = Browser::new(s.addr("web6"));
    let (status, v) = api(&mut b, "");
    assert_eq!(status, 200);
    assert_eq!(v["ip"], "::1");
    let page = b.get("/dns-check?lang=en").body;
    assert!(page.contains("<div class=\"big\">::1</div>"), "{page}");
}
