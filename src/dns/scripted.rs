//! A resolver that answers from a script, for unit tests of what is built
//! on DNS (the FCrDNS verdicts, MX routing) without a DNS server. Names not
//! in the script do not exist (NXDOMAIN).

use super::{absolute, Lookup, MxHost, Resolve};
use futures_util::future::{self, BoxFuture, FutureExt};
use hickory_resolver::proto::rr::Name;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Default)]
pub struct ScriptedResolver {
    ptr: HashMap<IpAddr, Lookup<Vec<Name>>>,
    addrs: HashMap<Name, Lookup<Vec<IpAddr>>>,
    mx: HashMap<Name, Lookup<Vec<MxHost>>>,
}

fn name(text: &str) -> Name {
    absolute(text).expect("a valid name in the script")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address in the script")
}

impl ScriptedResolver {
    /// `ip` has these PTR names.
    pub fn with_ptr(mut self, addr: &str, names: &[&str]) -> Self {
        let names = names.iter().map(|n| name(n)).collect();
        self.ptr.insert(ip(addr), Lookup::Found(names));
        self
    }

    /// `host` has these A/AAAA addresses (none: the name exists, no address).
    pub fn with_host(mut self, host: &str, addrs: &[&str]) -> Self {
        let answer = if addrs.is_empty() {
            Lookup::NoRecords { nxdomain: false }
        } else {
            Lookup::Found(addrs.iter().map(|a| ip(a)).collect())
        };
        self.addrs.insert(name(host), answer);
        self
    }

    /// `domain` has these MX records (preference, host; "" for a null MX).
    pub fn with_mx(mut self, domain: &str, hosts: &[(u16, &str)]) -> Self {
        let hosts = hosts
            .iter()
            .map(|&(preference, host)| MxHost {
                preference,
                host: host.into(),
            })
            .collect();
        self.mx.insert(name(domain), Lookup::Found(hosts));
        self
    }

    /// The PTR lookup of `ip` fails (timeout, SERVFAIL).
    pub fn failing_ptr(mut self, addr: &str) -> Self {
        self.ptr
            .insert(ip(addr), Lookup::Temp("scripted failure".into()));
        self
    }

    /// The address lookup of `host` fails (timeout, SERVFAIL).
    pub fn failing_host(mut self, host: &str) -> Self {
        self.addrs
            .insert(name(host), Lookup::Temp("scripted failure".into()));
        self
    }
}

fn answer<K: Eq + std::hash::Hash, T: Clone + Send + 'static>(
    script: &HashMap<K, Lookup<T>>,
    key: &K,
) -> BoxFuture<'static, Lookup<T>> {
    let found = script
        .get(key)
        .cloned()
        .unwrap_or(Lookup::NoRecords { nxdomain: true });
    future::ready(found).boxed()
}

impl Resolve for ScriptedResolver {
    fn ptr(&self, ip: IpAddr) -> BoxFuture<'_, Lookup<Vec<Name>>> {
        answer(&self.ptr, &ip)
    }

    fn addrs(&self, name: Name) -> BoxFuture<'_, Lookup<Vec<IpAddr>>> {
        answer(&self.addrs, &name)
    }

    fn mx(&self, name: Name) -> BoxFuture<'_, Lookup<Vec<MxHost>>> {
        answer(&self.mx, &name)
    }
}
