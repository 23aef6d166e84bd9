//! Unit tests of the address grammar and the relay decision.

use super::*;

fn local(d: &str) -> bool {
    d == "be.test"
}

fn dest(raw: &str) -> Result<Destination, AddrError> {
    parse_path(raw.as_bytes()).map(|p| classify(&p, local, "be.test"))
}

fn is_local(l: &str) -> Destination {
    Destination::Local {
        lookup: format!("{l}@be.test"),
        local: l.into(),
    }
}

#[test]
fn plain_addresses() {
    assert_eq!(dest("btm0001@be.test"), Ok(is_local("btm0001")));
    assert_eq!(dest("btm0001@BE.Test"), Ok(is_local("btm0001")));
    assert_eq!(dest("\"btm0001\"@be.test"), Ok(is_local("btm0001")));
    assert_eq!(
        dest("Some.One@Example.ORG"),
        Ok(Destination::Remote("Some.One@example.org".into()))
    );
    assert_eq!(parse_path(b""), Ok(Path::Null));
    assert_eq!(parse_path(b"PostMaster"), Ok(Path::Postmaster));
    assert_eq!(
        dest("\"a b\"@remote.test"),
        Ok(Destination::Remote("\"a b\"@remote.test".into()))
    );
}

#[test]
fn relay_tricks_never_local_never_smuggled() {
    let refused = [
        "u%remote.test@be.test",       // percent hack
        "remote.test!u@be.test",       // bang path
        "\"u@remote.test\"@be.test",   // quoted @
        "\"u%remote.test\"@be.test",   // quoted %
        "\"u\\@remote.test\"@be.test", // quoted-pair @
        "u@[127.0.0.1]",               // address literal
        "u@[IPv6:::1]",
    ];
    for r in refused {
        assert_eq!(dest(r), Ok(Destination::Refused), "{r}");
    }
    // Source routes are ignored: only the final mailbox counts.
    assert_eq!(
        dest("@be.test:u@remote.test"),
        Ok(Destination::Remote("u@remote.test".into()))
    );
    assert_eq!(
        dest("@remote.test,@x.test:btm1@be.test"),
        Ok(is_local("btm1"))
    );
    // Trailing dots and empty labels are not RFC 5321 domains.
    for bad in [
        "u@be.test.",
        "u@remote.test.",
        "u@be..test",
        "u@.be.test",
        "u@-be.test",
        "u@",
        "@be.test",
        "u",
        "u@be.test@x.test",
        ".u@be.test",
        "u.@be.test",
        "u..v@be.test",
        "\"unterminated@be.test",
        "@a:@b:u@c",
        "@:u@be.test",
    ] {
        assert_eq!(dest(bad), Err(AddrError::Syntax), "{bad}");
    }
}

#[test]
fn seed_13_and_14() {
    assert_eq!(
        parse_path("test@be.to・".as_bytes()),
        Err(AddrError::ControlChars)
    );
    assert_eq!(
        parse_path(b"test@be.to\x81\x45"),
        Err(AddrError::ControlChars)
    );
    assert_eq!(parse_path(b"te\x07st@be.to"), Err(AddrError::ControlChars));
    assert_eq!(parse_path(b"test@be,to"), Err(AddrError::Comma));
    assert_eq!(parse_path(b"test@be,to\x01"), Err(AddrError::ControlChars));
}

#[test]
fn account_addresses() {
    let check = |a: &str| check_account_address(a, local);
    assert_eq!(check("btm0001@be.test"), Ok(()));
    assert_eq!(check("first.last@be.test"), Ok(()));
    assert_eq!(check("a@remote.test"), Err(AccountAddrError::NotLocal));
    for bad in [
        "x\r\nBcc: victim@remote.test\r\nX: <a@be.test",
        "a b>, <evil@remote.test@be.test",
        "\"a\"@be.test",
        "a%x@be.test",
        "a@BE.test",
        "@x.test:a@be.test",
        "a@[127.0.0.1]",
        "postmaster",
        "",
    ] {
        assert_eq!(check(bad), Err(AccountAddrError::Invalid), "{bad:?}");
    }
}

#[test]
fn length_limits() {
    let long_local = format!("{}@be.test", "a".repeat(65));
    assert_eq!(dest(&long_local), Err(AddrError::Syntax));
    let ok_local = format!("{}@be.test", "a".repeat(64));
    assert!(matches!(dest(&ok_local), Ok(Destination::Local { .. })));
}

/// One grammar: whatever `parse_path` accepts, printed, is read back by the
/// command parser and by `parse_path` as the same path, and never holds a
/// `<` or `>` that a receiver could take for the end of the path.
mod round_trip {
    use super::super::*;
    use crate::smtp::command::{self, Command};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Literals of every kind and near miss, and the fuzzing finding.
    const TRICKY: &[&str] = &[
        "R@[or'@VVVV\"-VVVVVVVV]",
        "a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]",
        "a@[127.0.0.1]",
        "a@[IPv6:::1]",
        "a@[ipv6:2001:db8::1]",
        "a@[IPv6:::ffff:192.0.2.1]",
        "a@[x-tag:some-content]",
        "a@[x:>]",
        "a@[x:\"]",
        "a@[256.0.0.1]",
        "a@[1.2.3]",
        "a@[IPv6:nope]",
        "a@[-x:y]",
        "a@[:y]",
        "\"a>b\"@c.test",
        "\"a b\"@c.test",
        "\"a\\\"b\\\\\"@c.test",
        "\"\"@c.test",
        "@[IPv6:::1]:u@c.test",
        "@a.test,@[127.0.0.1]:u@c.test",
        "@[x:y,z]:u@c.test",
        "postmaster",
        "",
    ];

    /// The parts that attackers and fuzzers combine.
    const PIECES: &[&str] = &[
        "a",
        "Z9",
        ".",
        "-",
        "@",
        "[",
        "]",
        "\"",
        "\\",
        "<",
        ">",
        ":",
        ",",
        " ",
        "'",
        "%",
        "!",
        "IPv6:",
        "::1",
        "127.0.0.1",
        "x:",
        "be.test",
        "=",
        "\t",
    ];

    /// Random pieces, half of them shaped `[route:]local@domain` so that
    /// many parse.
    fn generated(n: usize) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(5321);
        let pieces = |rng: &mut StdRng, max: usize| -> String {
            let len = rng.gen_range(1..=max);
            (0..len)
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect()
        };
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    return pieces(&mut rng, 12);
                }
                let route = match rng.gen_range(0..4) {
                    0 => format!("@{}:", pieces(&mut rng, 3)),
                    _ => String::new(),
                };
                let local = match rng.gen_range(0..3) {
                    0 => format!("\"{}\"", pieces(&mut rng, 4)),
                    _ => pieces(&mut rng, 3),
                };
                let domain = match rng.gen_range(0..3) {
                    0 => format!("[{}]", pieces(&mut rng, 4)),
                    _ => pieces(&mut rng, 3),
                };
                format!("{route}{local}@{domain}")
            })
            .collect()
    }

    /// Checks the property for one input; the path when it parsed.
    fn check(raw: &str) -> Option<Path> {
        let path = parse_path(raw.as_bytes()).ok()?;
        let printed = path.to_string();
        assert!(
            !printed.contains(['<', '>']),
            "{raw:?} prints as {printed:?}"
        );
        assert_eq!(parse_path(printed.as_bytes()), Ok(path.clone()), "{raw:?}");
        let wire = printed.as_bytes().to_vec();
        assert_eq!(
            command::parse(format!("RCPT TO:<{printed}>").as_bytes()),
            Ok(Command::Rcpt { path: wire.clone() }),
            "{raw:?}"
        );
        match command::parse(format!("MAIL FROM:<{printed}> SIZE=1").as_bytes()) {
            Ok(Command::Mail { path, params }) => {
                assert_eq!((path, params.size), (wire, Some(1)), "{raw:?}")
            }
            other => panic!("{raw:?} as MAIL FROM: {other:?}"),
        }
        Some(path)
    }

    #[test]
    fn printed_paths_parse_back_identically() {
        let tricky_ok = TRICKY.iter().filter_map(|r| check(r)).count();
        let valid: Vec<Path> = generated(200_000).iter().filter_map(|r| check(r)).collect();
        let has = |f: fn(&Mailbox) -> bool| {
            valid
                .iter()
                .filter(|p| matches!(p, Path::Mailbox(m) if f(m)))
                .count()
        };
        let (quoted, literal) = (
            has(|m| m.quoted),
            has(|m| matches!(m.domain, Domain::Literal(_))),
        );
        // The generator must reach valid paths of each kind, or the
        // property holds vacuously.
        assert!(
            tricky_ok >= 10 && valid.len() >= 1000 && quoted >= 100 && literal >= 20,
            "{tricky_ok} {} {quoted} {literal}",
            valid.len()
        );
    }
}

mod literals {
    use super::super::*;

    fn literal(raw: &str) -> Result<Domain, AddrError> {
        match parse_path(raw.as_bytes())? {
            Path::Mailbox(m) => Ok(m.domain),
            p => panic!("{p:?}"),
        }
    }

    /// RFC 5321 4.1.3: IPv4, `IPv6:` and Standardized-tag ":" 1*dcontent.
    #[test]
    fn only_rfc_5321_address_literals() {
        for ok in [
            "a@[127.0.0.1]",
            "a@[0.0.0.0]",
            "a@[255.255.255.255]",
            "a@[IPv6:::1]",
            "a@[IPv6:2001:db8::1]",
            "a@[ipv6:::ffff:192.0.2.1]",
            "a@[IPv6:1:2:3:4:5:6:7:8]",
            "a@[x-tag:some.content!]",
        ] {
            let lit = &ok[3..ok.len() - 1];
            assert_eq!(literal(ok), Ok(Domain::Literal(lit.into())), "{ok}");
        }
        for bad in [
            "a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]",
            "R@[or'@VVVV\"-VVVVVVVV]",
            "a@[]",
            "a@[1.2.3]",
            "a@[1.2.3.4.5]",
            "a@[256.1.1.1]",
            "a@[1.2.3.0004]",
            "a@[IPv6:]",
            "a@[IPv6:1.2.3.4]",
            "a@[IPv6:::1%eth0]",
            "a@[IPv6:::g]",
            "a@[x:]",
            "a@[:x]",
            "a@[-x:y]",
            "a@[x-:y]",
            "a@[x y:z]",
            "a@[x:y z]",
            "a@[x:a>b]",
            "a@[x:a<b]",
            "a@[x:a\"b]",
            "a@[x:a@b]",
            "a@[nocolon]",
        ] {
            assert_eq!(literal(bad), Err(AddrError::Syntax), "{bad}");
        }
    }

    /// A `<` or `>` inside a path ends it early for receivers that look for
    /// the first `>`: refused even where RFC 5321 qtextSMTP allows it.
    #[test]
    fn no_angle_brackets_inside_a_path() {
        for bad in ["\"a>b\"@c.test", "\"a<b\"@c.test", "\"a\\>b\"@c.test"] {
            assert_eq!(parse_path(bad.as_bytes()), Err(AddrError::Syntax), "{bad}");
        }
    }

    /// Source routes may name literals whose `:` is not the route's end.
    #[test]
    fn source_routes_with_literals() {
        for (raw, domain) in [
            ("@[IPv6:::1]:u@c.test", "c.test"),
            ("@a.test,@[127.0.0.1]:u@c.test", "c.test"),
        ] {
            assert_eq!(literal(raw), Ok(Domain::Name(domain.into())), "{raw}");
        }
        assert_eq!(parse_path(b"@[x:y]z:u@c.test"), Err(AddrError::Syntax));
    }
}
