//! SEED-7, SEED-15: mail is sent from several threads while the server is
//! killed with SIGKILL at random moments and restarted. Every message that
//! got 250 must be in the mailbox or the queue, intact; a message whose
//! reply was lost may or may not be there, but never in part or twice.

mod common;
mod smtp_util;
use smtp_util::*;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The message body for (thread, n): deterministic, so a stored copy can be
/// checked octet by octet. Every 25th one is big enough to be spooled to disk.
fn message(t: usize, n: usize) -> Vec<u8> {
    let mut m = format!("Subject: crash {t}-{n}\r\n\r\n").into_bytes();
    let lines = if n % 25 == 24 {
        9000
    } else {
        5 + (t * 7 + n * 13) % 200
    };
    for i in 0..lines {
        m.extend_from_slice(
            format!("{t}-{n} line {i} {}\r\n", "m".repeat((i * 31) % 70)).as_bytes(),
        );
    }
    m.extend_from_slice(format!("END {t}-{n}\r\n").as_bytes());
    m
}

fn id_of(stored: &[u8]) -> (usize, usize) {
    let text = String::from_utf8_lossy(stored);
    let at = text.find("Subject: crash ").expect("subject") + 15;
    let id = &text[at..at + text[at..].find("\r\n").unwrap()];
    let (t, n) = id.split_once('-').unwrap();
    (t.parse().unwrap(), n.parse().unwrap())
}

fn body_of(stored: &[u8]) -> &[u8] {
    let text = String::from_utf8_lossy(stored);
    &stored[text.find("Subject: crash ").unwrap()..]
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr, auth: bool) -> std::io::Result<Conn> {
        let w = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        w.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut c = Conn {
            r: BufReader::new(w.try_clone()?),
            w,
        };
        c.expect("", "220")?;
        c.expect("EHLO crash.test\r\n", "250 ")?;
        if auth {
            c.expect("AUTH PLAIN AGJ0bTAwMDEAcGFzczE=\r\n", "235 ")?;
        }
        Ok(c)
    }

    /// Sends `cmd` and reads a reply whose last line starts with `want`.
    fn expect(&mut self, cmd: &str, want: &str) -> std::io::Result<()> {
        self.w.write_all(cmd.as_bytes())?;
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return if l.starts_with(want) {
                    Ok(())
                } else {
                    Err(std::io::Error::other(l))
                };
            }
        }
    }
}

/// Sends one message; Ok(true) when it got 250 after the dot.
fn send(c: &mut Conn, remote: bool, body: &[u8]) -> std::io::Result<bool> {
    let rcpt = if remote {
        "far@remote.test"
    } else {
        "btm0001@be.test"
    };
    c.expect("MAIL FROM:<crash@remote.test>\r\n", "250")?;
    c.expect(&format!("RCPT TO:<{rcpt}>\r\n"), "250")?;
    c.expect("DATA\r\n", "354")?;
    c.w.write_all(body)?;
    match c.expect(".\r\n", "250") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::Other => Ok(false),
        Err(e) => Err(e),
    }
}

#[test]
fn acknowledged_mail_survives_sigkill() {
    let mut s = server("");
    let addrs = Arc::new(Mutex::new((s.addr("mx"), s.addr("smtpa"))));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(usize, usize, bool)>::new()));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (addrs, stop, acked) = (addrs.clone(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let remote = t == 3; // one thread relays through the queue
            let mut n = 0;
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => {
                        let (mx, smtpa) = *addrs.lock().unwrap();
                        match Conn::open(if remote { smtpa } else { mx }, remote) {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        }
                    }
                };
                // Each (t, n) is sent once: after a lost reply we move on.
                let body = message(t, n);
                match send(c, remote, &body) {
                    Ok(true) => acked.lock().unwrap().push((t, n, remote)),
                    Ok(false) => {}
                    Err(_) => conn = None,
                }
                n += 1;
            }
        }));
    }
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300 + rand::random::<u64>() % 900));
        s.restart(); // SIGKILL, then start on the same data
        *addrs.lock().unwrap() = (s.addr("mx"), s.addr("smtpa"));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too little mail got through: {}",
        acked.len()
    );

    // Everything visible, local and queued, is whole and there once.
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for m in pop_messages(s.addr("pop"), "btm0001", "pass1") {
        let (t, n) = id_of(&m);
        assert_eq!(body_of(&m), message(t, n).as_slice(), "{t}-{n} damaged");
        *seen.entry((t, n)).or_default() += 1;
    }
    for id in queue_ids(&s) {
        let m = std::fs::read(s.data_dir().join("queue").join(&id)).unwrap();
        let (t, n) = id_of(&m);
        assert_eq!(
            body_of(&m),
            message(t, n).as_slice(),
            "queued {t}-{n} damaged"
        );
        *seen.entry((t, n)).or_default() += 1;
    }
    eprintln!("acknowledged {}, visible {}", acked.len(), seen.len());
    assert!(seen.values().all(|&c| c == 1), "duplicates: {seen:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|(t, n, _)| !seen.contains_key(&(*t, *n)))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let remote: HashSet<_> = acked.iter().filter(|a| a.2).collect();
    assert!(!remote.is_empty(), "no queued mail was acknowledged");
}
