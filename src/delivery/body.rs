//! A queued message's octets for SMTP DATA, read on a blocking thread so a
//! large message streams with bounded memory (two chunks in flight).
//!
//! The reader ends the stream with an explicit end marker. A channel that
//! closes without it (the reader panicked, or the runtime cancelled it at
//! shutdown before it ran) is an error, never the end of the message: a
//! final dot after a cut-off body would make the receiver deliver a
//! truncated message.

use std::io::{self, Read};
use tokio::sync::mpsc;

/// `Some(chunk)` for data, `None` once at the end.
type Chunk = io::Result<Option<Vec<u8>>>;

pub struct Body(mpsc::Receiver<Chunk>);

impl Body {
    /// Starts reading what `open` opens on a blocking thread.
    pub fn stream(
        open: impl FnOnce() -> io::Result<Box<dyn Read + Send>> + Send + 'static,
    ) -> Body {
        let (tx, rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let mut r = match open() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                let chunk = match r.read(&mut buf) {
                    Ok(0) => Ok(None),
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let more = matches!(chunk, Ok(Some(_)));
                if tx.blocking_send(chunk).is_err() || !more {
                    return;
                }
            }
        });
        Body(rx)
    }

    /// The next chunk; `None` at the end of the message.
    pub async fn next(&mut self) -> Chunk {
        self.0.recv().await.unwrap_or_else(|| {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the queued message reader stopped early",
            ))
        })
    }

    /// A body whose reader died after `first` (tests of the sender).
    #[cfg(test)]
    pub fn cut_off(first: &[u8]) -> Body {
        let (tx, rx) = mpsc::channel(2);
        tx.try_send(Ok(Some(first.to_vec()))).expect("room for one");
        Body(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(mut b: Body) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = b.next().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_whole_message_ends_with_the_end_marker() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let copy = data.clone();
        let b = Body::stream(move || Ok(Box::new(io::Cursor::new(copy)) as Box<dyn Read + Send>));
        assert_eq!(read_all(b).await.unwrap(), data);
    }

    /// Gives one chunk, then panics.
    struct Dies(bool);
    impl Read for Dies {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(!self.0, "reader died");
            self.0 = true;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[tokio::test]
    async fn a_reader_that_dies_is_an_error_not_the_end() {
        let b = Body::stream(|| Ok(Box::new(Dies(false)) as Box<dyn Read + Send>));
        let e = read_all(b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let open_failed = Body::stream(|| Err(io::Error::other("gone")));
        assert_eq!(read_all(open_failed).await.unwrap_err().to_string(), "gone");
    }
}
