//! The admin CLI contract of the SPEC's interface section.

mod common;
use common::*;

fn config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nlocal_domains = [\"be.test\", \"alias.test\"]\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    (dir, cfg)
}

fn run(cfg: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let out = cli_with_config(cfg, args, stdin.as_bytes());
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn user_lifecycle() {
    let (_d, cfg) = config();
    let (ok, out) = run(
        &cfg,
        &["user", "add", "btm0001", "--password-stdin"],
        "pw\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("btm0001@be.test"), "{out}");
    assert!(!out.contains("password:"), "{out}");

    let (ok, out) = run(&cfg, &["user", "add", "btm0002"], "");
    assert!(ok, "{out}");
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap();
    assert_eq!(generated.len(), 16);

    let (ok, out) = run(&cfg, &["user", "add", "btm0001", "--password-stdin"], "x");
    assert!(!ok, "duplicate accepted: {out}");
    let (ok, out) = run(&cfg, &["user", "add", "../evil", "--password-stdin"], "x");
    assert!(!ok, "{out}");
    let (ok, out) = run(
        &cfg,
        &[
            "user",
            "add",
            "x1",
            "--address",
            "x1@elsewhere.test",
            "--password-stdin",
        ],
        "x",
    );
    assert!(!ok && out.contains("not at a local domain"), "{out}");

    let (ok, _) = run(
        &cfg,
        &["user", "passwd", "btm0001", "--password-stdin"],
        "new\n",
    );
    assert!(ok);
    let (ok, _) = run(
        &cfg,
        &["user", "secret", "btm0001", "--secret-stdin"],
        "tanstaaf\n",
    );
    assert!(ok);
    let (ok, out) = run(&cfg, &["user", "smtp-password", "btm0001"], "");
    assert!(ok && out.contains("smtp password: "), "{out}");
    let (ok, out) = run(&cfg, &["user", "list"], "");
    assert!(ok);
    let line = out.lines().find(|l| l.starts_with("btm0001")).unwrap();
    assert!(
        line.contains("secret") && line.contains("smtp-password"),
        "{line}"
    );
    // The secret is never shown again.
    assert!(!out.contains("tanstaaf"));
    let (ok, out) = run(&cfg, &["user", "show", "btm0001@be.test"], "");
    assert!(
        ok && out.contains("apop/cram-md5:  yes") && !out.contains("tanstaaf"),
        "{out}"
    );

    let (ok, _) = run(&cfg, &["user", "del", "btm0002"], "");
    assert!(ok);
    let (_, out) = run(&cfg, &["user", "list"], "");
    assert!(!out.contains("btm0002"));
    let (ok, out) = run(&cfg, &["user", "del", "btm0002"], "");
    assert!(!ok && out.contains("no account"), "{out}");
}

/// Account addresses are addr-specs at a local domain, by the grammar SMTP
/// uses: nothing that breaks `user list` lines or headers, nothing SMTP
/// would not deliver to.
#[test]
fn account_addresses_follow_the_smtp_grammar() {
    let (_d, cfg) = config();
    for bad in [
        "x\r\nBcc: victim@remote.test\r\nX: <a@be.test",
        "a b>, <evil@remote.test@be.test",
        "a b@be.test",
        "<a@be.test>",
        "\"a\"@be.test",
        "a%remote.test@be.test",
        "a..b@be.test",
        "a@be.test.",
        "a@[127.0.0.1]",
        "postmaster",
        "@be.test",
    ] {
        let (ok, out) = run(
            &cfg,
            &["user", "add", "x1", "--address", bad, "--password-stdin"],
            "pw",
        );
        assert!(!ok && out.contains("not a valid address"), "{bad:?}: {out}");
    }
    let (ok, out) = run(
        &cfg,
        &[
            "user",
            "add",
            "x1",
            "--address",
            "First.Last@Alias.Test",
            "--password-stdin",
        ],
        "pw",
    );
    assert!(ok && out.contains("<first.last@alias.test>"), "{out}");
    let (_, out) = run(&cfg, &["user", "list"], "");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn deliver_exit_codes_and_crlf() {
    let (d, cfg) = config();
    run(&cfg, &["user", "add", "u1", "--password-stdin"], "pw");
    let out = cli_with_config(
        &cfg,
        &["deliver", "--to", "u1@be.test", "--from", "s@x.test"],
        b"Subject: t\n\nbody\n",
    );
    assert!(out.status.success(), "{out:?}");
    let new = d.path().join("data/mail/u1/new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(
        text,
        b"Return-Path: <s@x.test>\r\nSubject: t\r\n\r\nbody\r\n"
    );

    let out = cli_with_config(&cfg, &["deliver", "--to", "ghost@be.test"], b"x\n");
    assert_eq!(out.status.code(), Some(67));
}

/// `queue inject` queues only paths the SMTP address grammar accepts, in
/// the form the outbound client writes.
#[test]
fn queue_inject_takes_only_rfc_5321_paths() {
    let (_d, cfg) = config();
    for (from, to) in [
        (
            "a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]",
            "b@remote.test",
        ),
        ("a@be.test", "b@remote.test>\r\nRCPT TO:<c@remote.test"),
        ("a@be.test", ""),
        ("a@be.test", "postmaster"),
    ] {
        let (ok, out) = run(
            &cfg,
            &["queue", "inject", "--from", from, "--to", to],
            "Subject: x\n\nx\n",
        );
        assert!(!ok && out.contains("not a valid"), "{from:?} {to:?}: {out}");
    }
    let (ok, out) = run(&cfg, &["queue", "list"], "");
    assert!(ok && out.starts_with("0 message"), "{out}");
    let (ok, out) = run(
        &cfg,
        &["queue", "inject", "--from", "", "--to", "B@Remote.Test"],
        "Subject: x\n\nx\n",
    );
    let id = out.trim().strip_prefix("queued as ").unwrap_or_default();
    assert!(ok && !id.is_empty(), "{out}");
    let (_, out) = run(&cfg, &["queue", "show", id], "");
    assert!(out.contains("B@remote.test"), "{out}");
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nname = \"pop\"\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\ntls = \"sometimes\"\n",
    )
    .unwrap();
    let out = cli_with_config(&cfg, &["serve"], b"");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listener[0].tls") && err.contains("sometimes"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = cli_with_config(&dir.path().join("missing.toml"), &["user", "list"], b"");
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn lock_and_queue_commands_on_empty_store() {
    let (_d, cfg) = config();
    let (ok, out) = run(&cfg, &["lock", "list"], "");
    assert!(ok && out.is_empty(), "{out}");
    let (ok, out) = run(&cfg, &["queue", "list"], "");
    assert!(ok && out.contains("0 message(s)"), "{out}");
    let (ok, out) = run(&cfg, &["queue", "show", "NOPE"], "");
    assert!(!ok && out.contains("no queued message"), "{out}");
}
