//! A real browser (Debian's chromium, driven by playwright-core from
//! tests/browser) logs in, deletes a 20 MB message through Remote mail and
//! takes screenshots into test-output/browser/; a POP3 client (Python's
//! poplib) then no longer sees the message. Needs scripts/install-test-deps.sh.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn huge_message() -> Vec<u8> {
    let mut m = b"From: Big Sender <big@example.jp>\nTo: btm0001@be.test\nSubject: Huge attachment\nDate: Tue, 1 Oct 2002 10:00:00 +0900\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attachment\n--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"photos.zip\"\nContent-Transfer-Encoding: base64\n\n".to_vec();
    let line = [b'Q'; 76];
    while m.len() < 20 * 1024 * 1024 {
        m.extend_from_slice(&line);
        m.push(b'\n');
    }
    m.extend_from_slice(b"--b--\n");
    m
}

#[test]
fn browser_deletes_a_huge_message_that_pop3_then_no_longer_sees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/remote_mail.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run scripts/install-test-deps.sh first (npm ci in tests/browser)"
    );
    // 127.0.0.3 has the seed's problem: its PTR name points elsewhere.
    let records = [
        "ptr-record=3.0.0.127.in-addr.arpa,dyn-3.isp.test",
        "address=/dyn-3.isp.test/127.0.0.99",
    ];
    let (s, _dns) = web_server_with("", LISTENERS, &records);
    s.add_user("btm0001", "browser-pw-1");
    s.deliver("btm0001", &huge_message());
    s.deliver(
        "btm0001",
        "From: =?UTF-8?B?5bGx55Sw5aSq6YOO?= <taro@example.jp>\nSubject: =?UTF-8?B?5LuK5pel44Gu5LqI5a6a?=\nDate: Wed, 2 Oct 2002 09:30:00 +0900\n\nsmall\n".as_bytes(),
    );
    let outdir = root.join("test-output/browser");
    let url = format!("http://{}", s.addr("web"));
    let out = Command::new("node")
        .arg(&script)
        .args([url.as_str(), "btm0001", "browser-pw-1"])
        .arg(&outdir)
        .args(["Huge attachment", "127.0.0.3"])
        .output()
        .expect("running node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "browser script failed:\n{text}\n--- server log ---\n{}",
        s.log_text()
    );
    assert!(text.contains("deleted"), "{text}");
    for shot in [
        "dns-check-ja-phone.png",
        "dns-check-en-desktop.png",
        "remote-mail-en-desktop.png",
    ] {
        let meta = std::fs::metadata(outdir.join(shot)).expect(shot);
        assert!(meta.len() > 5000, "{shot} is too small");
    }

    // A POP3 client sees only the small message now.
    let pop = s.addr("pop");
    let seen = python(
        r#"
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
p.user("btm0001"); p.pass_("browser-pw-1")
count, size = p.stat()
print(count, size)
for n in range(1, count + 1):
    for line in p.top(n, 0)[1]:
        if line.lower().startswith(b"subject:"):
            print(line.decode())
p.quit()
"#,
        &[&pop.ip().to_string(), &pop.port().to_string()],
    );
    let mut lines = seen.lines();
    let stat: Vec<u64> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(stat[0], 1, "{seen}");
    assert!(stat[1] < 10_000, "{seen}");
    assert!(!seen.contains("Huge attachment"), "{seen}");
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 1);
}
