//! Connections that are still setting up: accepted, but not yet through
//! their hello and session handshake (RPC) or their upgrade request
//! (HTTP), so nobody knows who they are. They get a small cap of their
//! own, apart from established connections, and a share per peer address
//! (an IPv6 peer's /64).
//!
//! A new connection is never refused for want of room, and who is closed
//! to make room depends on what each has done:
//! - an address past its share loses its oldest connection that has been
//!   silent for [`GRACE`] (silent: nothing waiting to be read, and its
//!   thread has not yet had its HTTP request's first bytes, or an RPC
//!   connection's whole hello); if it has none, the new one
//!   is let in anyway (a burst of clients that speak at once is not cut);
//! - past the cap, the oldest silent connection goes (the fullest
//!   address's first), and only when none is silent, the oldest.
//!
//! A client that sets up promptly (it speaks at once) is therefore not
//! locked out by connections that never finish, even from its own
//! address, and established connections are not counted here at all.
//! Each connection's own setup deadline still applies.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How long a connection may stay silent before it counts against its
/// address's share.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// Default cap on connections setting up at once, per listener.
pub(crate) const DEFAULT_MAX: usize = 256;
/// Default share of one peer address.
pub(crate) const DEFAULT_PER_ADDRESS: usize = 64;

/// The address whose share a peer at `ip` counts against: an IPv6
/// address's /64 (what one host or network holds; its 2^64 addresses
/// would otherwise each have a share), an IPv4 address as itself (also
/// when seen through an IPv6 socket, as `::ffff:a.b.c.d`).
fn share_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// See the module documentation. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    /// What is counted, for logs ("RPC", "HTTP").
    what: &'static str,
    max: usize,
    per_address: usize,
    grace: Duration,
    state: Mutex<State>,
    evicted: AtomicU64,
}

struct Conn {
    addr: IpAddr,
    stream: TcpStream,
    /// Its thread has read from it.
    spoke: bool,
    since: Instant,
}

impl Conn {
    /// Whether the peer has sent anything: its thread has read some, or
    /// bytes wait to be read (a look that takes nothing and does not wait:
    /// one non-blocking system call, made under the admission lock, and
    /// only until it first sees bytes, which it remembers).
    fn has_spoken(&mut self) -> bool {
        use rustix::net::{RecvFlags, recv};
        if !self.spoke {
            self.spoke = matches!(
                recv(&self.stream, &mut [0u8; 1], RecvFlags::PEEK | RecvFlags::DONTWAIT),
                Ok((n, _)) if n > 0
            );
        }
        self.spoke
    }
}

#[derive(Default)]
struct State {
    next: u64,
    /// By admission order: the oldest first.
    conns: BTreeMap<u64, Conn>,
    by_address: HashMap<IpAddr, usize>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<TcpStream> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.by_address.get_mut(&c.addr) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&c.addr);
            }
        }
        Some(c.stream)
    }

    /// The connection to close for a new one from `peer` (see the module
    /// documentation), if one must be.
    fn victim(
        &mut self,
        peer: IpAddr,
        max: usize,
        per_address: usize,
        grace: Duration,
    ) -> Option<u64> {
        let State {
            conns, by_address, ..
        } = self;
        let now = Instant::now();
        let mine = by_address.get(&peer).copied().unwrap_or(0);
        if mine >= per_address
            && let Some(v) = now
                .checked_sub(grace)
                .and_then(|before| oldest_silent(conns, |a| *a == peer, before))
        {
            return Some(v);
        }
        if conns.len() < max {
            return None;
        }
        // The fullest address's (of several as full, the oldest of theirs:
        // not whichever a map gives first, which may be a well-behaved
        // client's that has not spoken yet), then any, then the oldest.
        let most = by_address.values().copied().max().unwrap_or(0);
        oldest_silent(conns, |a| by_address.get(a) == Some(&most), now)
            .or_else(|| oldest_silent(conns, |_| true, now))
            .or_else(|| conns.keys().next().copied())
    }
}

/// The oldest connection of `conns` from an address `of` takes, admitted
/// by `before`, that has not spoken. Each connection looked at costs at
/// most one non-blocking peek, and none once it has spoken: the look stops
/// at the first silent one, and a flood of silent connections is met
/// first.
fn oldest_silent(
    conns: &mut BTreeMap<u64, Conn>,
    of: impl Fn(&IpAddr) -> bool,
    before: Instant,
) -> Option<u64> {
    conns
        .iter_mut()
        .filter(|(_, c)| of(&c.addr) && c.since <= before)
        .find_map(|(id, c)| (!c.has_spoken()).then_some(*id))
}

/// A connection's place among those setting up; dropping it (setup done
/// or failed) gives the place back.
pub(crate) struct Ticket {
    inner: Arc<Inner>,
    id: u64,
}

impl Ticket {
    /// Records that the connection has sent something (it is closed to
    /// make room only after those that have not).
    pub(crate) fn spoke(&self) {
        if let Some(c) = lock(&self.inner.state).conns.get_mut(&self.id) {
            c.spoke = true;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.inner.state).remove(self.id);
    }
}

impl Admission {
    /// At most `max` connections setting up at once, `per_address` of one
    /// peer address silent for [`GRACE`] (both at least 1).
    pub(crate) fn new(what: &'static str, max: usize, per_address: usize) -> Admission {
        Admission::with_grace(what, max, per_address, GRACE)
    }

    fn with_grace(
        what: &'static str,
        max: usize,
        per_address: usize,
        grace: Duration,
    ) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                what,
                max: max.max(1),
                per_address: per_address.clamp(1, max.max(1)),
                grace,
                state: Mutex::new(State::default()),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// Admits `stream` from `peer`, closing an older connection still
    /// setting up if there is no room (see the module documentation).
    pub(crate) fn admit(&self, stream: &TcpStream, peer: IpAddr) -> Ticket {
        let shown = peer;
        let peer = share_of(peer);
        let copy = stream.try_clone();
        let mut st = lock(&self.inner.state);
        let victim = st.victim(
            peer,
            self.inner.max,
            self.inner.per_address,
            self.inner.grace,
        );
        let setting_up = st.conns.len();
        let evicted = victim.and_then(|v| st.remove(v));
        let id = st.next;
        st.next += 1;
        match copy {
            Ok(copy) => {
                st.conns.insert(
                    id,
                    Conn {
                        addr: peer,
                        stream: copy,
                        spoke: false,
                        since: Instant::now(),
                    },
                );
                *st.by_address.entry(peer).or_default() += 1;
            }
            // (Not closable from here; its own deadline still ends it.)
            Err(e) => log::warn!("{} connection from {shown}: {e}", self.inner.what),
        }
        drop(st);
        if let Some(victim) = evicted {
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "{} connection from {} closed before its setup finished: {setting_up} connections were setting up (limit {}, {} per address)",
                self.inner.what,
                victim
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "a peer".into()),
                self.inner.max,
                self.inner.per_address
            );
            // Its thread, reading, sees the end and gives its place back.
            let _ = victim.shutdown(Shutdown::Both);
        }
        Ticket {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Connections setting up now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner.state).conns.len()
    }

    /// Connections closed so far to make room.
    pub(crate) fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn closed(c: &mut TcpStream) -> bool {
        use std::io::{ErrorKind, Read};
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        match c.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            Ok(_) => false,
        }
    }

    #[test]
    fn the_oldest_of_the_fullest_address_makes_room() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let adm = Admission::with_grace("test", 3, 2, Duration::ZERO);
        let (mut c1, s1) = pair(&l);
        let t1 = adm.admit(&s1, a);
        let (mut c2, s2) = pair(&l);
        let _t2 = adm.admit(&s2, a);
        // Address a holds its share: its oldest goes.
        let (_c3, s3) = pair(&l);
        let _t3 = adm.admit(&s3, a);
        assert!(closed(&mut c1));
        assert_eq!((adm.len(), adm.evicted()), (2, 1));
        drop(t1);
        assert_eq!(adm.len(), 2, "an evicted ticket gives nothing back twice");
        // Address b has room of its own up to the cap; past it, the
        // fullest address (a) gives up its oldest.
        let (_c4, s4) = pair(&l);
        let _t4 = adm.admit(&s4, b);
        assert_eq!(adm.evicted(), 1);
        let (_c5, s5) = pair(&l);
        let _t5 = adm.admit(&s5, b);
        assert!(closed(&mut c2));
        assert_eq!((adm.len(), adm.evicted()), (3, 2));
    }

    #[test]
    fn a_connection_that_has_spoken_goes_after_those_that_have_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let adm = Admission::with_grace("test", 3, 3, Duration::ZERO);
        // The oldest has sent its first bytes (not yet read); the next
        // one's thread has read some; the third is silent.
        let (mut c1, s1) = pair(&l);
        let _t1 = adm.admit(&s1, a);
        std::io::Write::write_all(&mut c1, b"hello").unwrap();
        let (_c2, s2) = pair(&l);
        let t2 = adm.admit(&s2, a);
        t2.spoke();
        let (mut c3, s3) = pair(&l);
        let _t3 = adm.admit(&s3, a);
        // (The bytes have arrived once the server end can peek them.)
        s1.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s1.peek(&mut [0u8; 1]).unwrap();
        let (_c4, s4) = pair(&l);
        let t4 = adm.admit(&s4, a);
        assert!(closed(&mut c3), "the silent one goes first");
        assert_eq!(adm.evicted(), 1);
        // With none silent left, past the cap, the oldest goes.
        t4.spoke();
        let (_c5, s5) = pair(&l);
        let _t5 = adm.admit(&s5, a);
        assert_eq!(adm.evicted(), 2);
        assert!(closed(&mut c1), "then the oldest");
    }

    /// One IPv6 host holds a /64 of addresses: its connections share one
    /// address's share, as an IPv4 host's do (and an IPv4 peer seen
    /// through an IPv6 socket is that IPv4 address).
    #[test]
    fn an_ipv6_64_is_one_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let adm = Admission::with_grace("test", 8, 2, Duration::ZERO);
        let (mut c1, s1) = pair(&l);
        let _t1 = adm.admit(&s1, "2001:db8:1:2::1".parse().unwrap());
        let (_c2, s2) = pair(&l);
        let _t2 = adm.admit(&s2, "2001:db8:1:2:ffff::7".parse().unwrap());
        // A third from the same /64: past its share, its oldest goes.
        let (_c3, s3) = pair(&l);
        let _t3 = adm.admit(&s3, "2001:db8:1:2:abcd::9".parse().unwrap());
        assert!(closed(&mut c1));
        assert_eq!(adm.evicted(), 1);
        // Another /64 has a share of its own.
        let (_c4, s4) = pair(&l);
        let _t4 = adm.admit(&s4, "2001:db8:1:3::1".parse().unwrap());
        assert_eq!(adm.evicted(), 1);
        // An IPv4 peer, mapped or not, is one address.
        let (mut c5, s5) = pair(&l);
        let _t5 = adm.admit(&s5, "::ffff:10.0.0.1".parse().unwrap());
        let (_c6, s6) = pair(&l);
        let _t6 = adm.admit(&s6, "10.0.0.1".parse().unwrap());
        let (_c7, s7) = pair(&l);
        let _t7 = adm.admit(&s7, "10.0.0.1".parse().unwrap());
        assert!(closed(&mut c5));
        assert_eq!(adm.evicted(), 2);
    }

    /// Past the cap with every address as full as the others (one
    /// connection each, a spread-out flood), the oldest silent goes: never
    /// the newest, a well-behaved client's that has not spoken yet.
    #[test]
    fn of_addresses_as_full_the_oldest_silent_goes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        for _ in 0..20 {
            let adm = Admission::with_grace("test", 3, 3, Duration::ZERO);
            let (mut c1, s1) = pair(&l);
            let _t1 = adm.admit(&s1, "10.0.0.1".parse().unwrap());
            let (_c2, s2) = pair(&l);
            let _t2 = adm.admit(&s2, "10.0.0.2".parse().unwrap());
            let (mut client, s3) = pair(&l);
            let _t3 = adm.admit(&s3, "10.0.0.3".parse().unwrap());
            let (_c4, s4) = pair(&l);
            let _t4 = adm.admit(&s4, "10.0.0.4".parse().unwrap());
            assert!(closed(&mut c1), "the oldest silent went");
            // The client speaks: its connection is still being read.
            std::io::Write::write_all(&mut client, b"x").unwrap();
            s3.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            assert_eq!(s3.peek(&mut [0u8; 1]).unwrap(), 1, "the newest stays");
        }
    }

    #[test]
    fn a_burst_within_the_grace_is_not_cut_by_the_share() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let adm = Admission::new("test", 4, 2);
        let conns: Vec<_> = (0..4)
            .map(|_| {
                let (c, s) = pair(&l);
                (c, adm.admit(&s, a), s)
            })
            .collect();
        assert_eq!((adm.len(), adm.evicted()), (4, 0), "twice its share, young");
        // Past the cap, the oldest silent one goes all the same.
        let (_c, s) = pair(&l);
        let _t = adm.admit(&s, a);
        assert_eq!((adm.len(), adm.evicted()), (4, 1));
        drop(conns);
    }
}
