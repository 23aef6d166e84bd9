//! What a mailbox holds, read through the store API (as POP3 and the
//! portal see it), not by path.

use crate::common::TestServer;
use betomail::store::Store;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The messages in a local mailbox, oldest first.
pub fn mailbox(data_dir: &Path, account: &str) -> Vec<Vec<u8>> {
    // The hostname only names new messages, which this never writes.
    let store = Store::open_embedded(data_dir, "harness.invalid").expect("opening the store");
    let Some(account) = store.accounts.find(account).expect("reading accounts") else {
        return Vec::new();
    };
    let listed = store.mail.list(&account).expect("listing the mailbox");
    listed
        .iter()
        .map(|m| {
            let mut octets = Vec::new();
            store
                .mail
                .open(&account, m)
                .and_then(|mut r| Ok(r.read_to_end(&mut octets)?))
                .expect("reading a message");
            octets
        })
        .collect()
}

/// The files of `account`'s Maildir (new/ and cur/), oldest name first.
/// Only for tests of Maildir itself (another reader moving new/ to cur/,
/// file names and permissions); what a mailbox holds is [`mailbox`].
pub fn maildir_files(server: &TestServer, account: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(server.data_dir().join("mail").join(account).join(sub))
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
        })
        .collect();
    files.sort();
    files
}
