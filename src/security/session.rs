//! The session step of a connection: authenticate both ends and encrypt
//! everything after.
//!
//! 1. A Noise `NN` handshake (`Noise_NN_25519_ChaChaPoly_BLAKE2s`, by the
//!    `snow` crate): two ephemeral X25519 keys, one round trip.
//! 2. Each side sends, encrypted, its blessings and an ed25519 signature,
//!    by the key those blessings name, over its role and the handshake
//!    hash. The hash is unique to this session, so the signature binds the
//!    blessings to it: a relay in the middle has another hash and cannot
//!    produce the signature without the private key.
//! 3. The server answers with its own proof and a verdict (accepted, or
//!    refused with a reason).
//!
//! Afterwards every byte travels in records: `len: u16 BE` and a
//! ChaCha20-Poly1305 ciphertext of at most 65,535 bytes, with one nonce
//! counter per direction. A record that fails authentication ends the
//! connection.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::{Signature, VerifyingKey};
use snow::StatelessTransportState;

use crate::error::{Error, Result};
use crate::outbox::Sink;
use crate::rpc::RemoteIdentity;
use crate::security::{Blessing, Principal};

/// The Noise protocol name.
pub const NOISE: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
const MAX_RECORD: usize = 65_535;
const TAG: usize = 16;
const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// Most blessings one side may present.
pub const MAX_BLESSINGS: usize = 16;

/// The byte streams of an established session.
pub(crate) struct Established {
    pub reader: Box<dyn Read + Send>,
    pub sink: Box<dyn Sink>,
    pub remote: RemoteIdentity,
}

/// A connection being set up, whose reads all end by one deadline: each
/// read waits only for the time left, so a peer that trickles its bytes
/// cannot stretch the setup (a timeout per read would start again with
/// every byte).
pub(crate) struct Deadline<'a> {
    stream: &'a TcpStream,
    at: Instant,
}

impl<'a> Deadline<'a> {
    /// `stream`, with reads ending by `at`.
    pub(crate) fn new(stream: &'a TcpStream, at: Instant) -> Deadline<'a> {
        Deadline { stream, at }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection's setup took too long",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self.stream).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_record(s: &mut impl Write, b: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(b.len() + 2);
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
    s.write_all(&out)
}

fn read_record(s: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut b)?;
    Ok(b)
}

fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::no_access(format!("{what}: {e}"))
}

fn noise_err(e: snow::Error) -> Error {
    Error::no_access(format!("session handshake failed: {e}"))
}

pub(crate) struct Transport {
    state: StatelessTransportState,
}

impl Transport {
    fn seal(&self, nonce: u64, plain: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; plain.len() + TAG];
        let n = self
            .state
            .write_message(nonce, plain, &mut out)
            .map_err(noise_err)?;
        out.truncate(n);
        Ok(out)
    }
    fn open(&self, nonce: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; sealed.len()];
        let n = self
            .state
            .read_message(nonce, sealed, &mut out)
            .map_err(|_| Error::no_access("a session record failed authentication"))?;
        out.truncate(n);
        Ok(out)
    }
}

fn proof(principal: &Principal, role: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut out = vec![principal.blessings().len().min(MAX_BLESSINGS) as u8];
    for b in principal.blessings().iter().take(MAX_BLESSINGS) {
        b.encode(&mut out);
    }
    out.extend_from_slice(&principal.sign(&signed(role, hash)));
    out
}

fn signed(role: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut m = b"wspr session v1 ".to_vec();
    m.extend_from_slice(role);
    m.push(0);
    m.extend_from_slice(hash);
    m
}

/// Checks a peer's proof: all its chains name one key, that key signed
/// this session's hash, and every chain verifies. The one session signature
/// is checked before the chains (up to 16 of 32 certificates each): a proof
/// made for another session costs one verification, not hundreds.
pub(crate) fn check_proof(b: &[u8], role: &[u8], hash: &[u8]) -> Result<RemoteIdentity> {
    let refuse = |why: &str| Error::no_access(format!("the peer's identity was refused: {why}"));
    let n = *b.first().ok_or_else(|| refuse("empty proof"))? as usize;
    if n == 0 || n > MAX_BLESSINGS {
        return Err(refuse("1 to 16 blessings are required"));
    }
    let mut at = 1;
    let mut blessings = Vec::with_capacity(n);
    for _ in 0..n {
        let (bl, used) = Blessing::decode(&b[at..]).map_err(|e| refuse(e.msg()))?;
        at += used;
        blessings.push(bl);
    }
    let key = blessings[0].public_key();
    if blessings.iter().any(|x| x.public_key() != key) {
        return Err(refuse("the blessings name different keys"));
    }
    let sig: [u8; 64] = b
        .get(at..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| refuse("no signature"))?;
    VerifyingKey::from_bytes(&key)
        .map_err(|_| refuse("invalid key"))?
        .verify_strict(&signed(role, hash), &Signature::from_bytes(&sig))
        .map_err(|_| refuse("the signature does not match the blessings' key (no private key?)"))?;
    for bl in &blessings {
        bl.verify().map_err(|e| refuse(e.msg()))?;
    }
    Ok(RemoteIdentity::new(key, blessings))
}

fn established(
    stream: &TcpStream,
    t: Transport,
    remote: RemoteIdentity,
    send_nonce: u64,
    recv_nonce: u64,
) -> Result<Established> {
    let t = Arc::new(t);
    let r = stream.try_clone().map_err(io_err("session"))?;
    let w = stream.try_clone().map_err(io_err("session"))?;
    Ok(Established {
        reader: Box::new(RecordReader {
            inner: BufReader::with_capacity(16 * 1024, FlushBeforeRead(r)),
            transport: t.clone(),
            nonce: recv_nonce,
            sealed: Vec::new(),
            plain: Vec::new(),
            at: 0,
        }),
        sink: Box::new(RecordSink {
            stream: w,
            transport: t,
            nonce: send_nonce,
            out: Vec::new(),
        }),
        remote,
    })
}

/// The client side, all by `deadline`: returns the session and the
/// server's identity.
pub(crate) fn client(
    stream: &mut TcpStream,
    deadline: Instant,
    principal: &Principal,
) -> Result<Established> {
    let established_on = stream;
    let stream = &mut Deadline::new(established_on, deadline);
    let mut hs = snow::Builder::new(NOISE.parse().map_err(noise_err)?)
        .build_initiator()
        .map_err(noise_err)?;
    let mut buf = vec![0u8; MAX_RECORD];
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    write_record(stream, &buf[..n]).map_err(io_err("session handshake"))?;
    let msg2 = read_record(stream).map_err(io_err("session handshake"))?;
    hs.read_message(&msg2, &mut buf).map_err(noise_err)?;
    let hash = hs.get_handshake_hash().to_vec();
    let t = Transport {
        state: hs.into_stateless_transport_mode().map_err(noise_err)?,
    };
    let mine = t.seal(0, &proof(principal, b"client", &hash))?;
    write_record(stream, &mine).map_err(io_err("session handshake"))?;
    let theirs = t.open(
        0,
        &read_record(stream).map_err(io_err("session handshake"))?,
    )?;
    let remote = check_proof(&theirs, b"server", &hash)?;
    let verdict = t.open(
        1,
        &read_record(stream).map_err(io_err("session handshake"))?,
    )?;
    match verdict.split_first() {
        Some((0, _)) => established(established_on, t, remote, 1, 2),
        Some((_, why)) => Err(Error::no_access(format!(
            "the server refused this client: {}",
            String::from_utf8_lossy(why)
        ))),
        None => Err(Error::no_access("the server sent an empty verdict")),
    }
}

/// The server side, all by `deadline`: returns the session and the
/// client's identity. A client whose proof fails is told why before the
/// error is returned.
pub(crate) fn server(
    stream: &mut TcpStream,
    deadline: Instant,
    principal: &Principal,
) -> Result<Established> {
    let (t, remote) = server_handshake(&mut Deadline::new(stream, deadline), principal)?;
    established(stream, t, remote, 2, 1)
}

/// The server's half of the handshake over any byte stream (the fuzz
/// target drives it with arbitrary bytes).
pub(crate) fn server_handshake(
    stream: &mut (impl Read + Write),
    principal: &Principal,
) -> Result<(Transport, RemoteIdentity)> {
    let mut hs = snow::Builder::new(NOISE.parse().map_err(noise_err)?)
        .build_responder()
        .map_err(noise_err)?;
    let mut buf = vec![0u8; MAX_RECORD];
    let msg1 = read_record(stream).map_err(io_err("session handshake"))?;
    hs.read_message(&msg1, &mut buf).map_err(noise_err)?;
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    write_record(stream, &buf[..n]).map_err(io_err("session handshake"))?;
    let hash = hs.get_handshake_hash().to_vec();
    let t = Transport {
        state: hs.into_stateless_transport_mode().map_err(noise_err)?,
    };
    let theirs = t.open(
        0,
        &read_record(stream).map_err(io_err("session handshake"))?,
    )?;
    let checked = check_proof(&theirs, b"client", &hash);
    let mine = t.seal(0, &proof(principal, b"server", &hash))?;
    write_record(stream, &mine).map_err(io_err("session handshake"))?;
    let verdict = match &checked {
        Ok(_) => vec![0],
        Err(e) => {
            let mut v = vec![1];
            v.extend_from_slice(e.msg().as_bytes());
            v
        }
    };
    write_record(stream, &t.seal(1, &verdict)?).map_err(io_err("session handshake"))?;
    Ok((t, checked?))
}

struct RecordSink {
    stream: TcpStream,
    transport: Arc<Transport>,
    nonce: u64,
    out: Vec<u8>,
}

impl Sink for RecordSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.clear();
        for chunk in buf.chunks(MAX_PLAIN) {
            let start = self.out.len();
            self.out.extend_from_slice(&[0, 0]);
            self.out.resize(start + 2 + chunk.len() + TAG, 0);
            let n = self
                .transport
                .state
                .write_message(self.nonce, chunk, &mut self.out[start + 2..])
                .map_err(|e| io::Error::other(format!("encrypting: {e}")))?;
            self.nonce += 1;
            self.out.truncate(start + 2 + n);
            self.out[start..start + 2].copy_from_slice(&(n as u16).to_be_bytes());
        }
        let res = self.stream.write_all(&self.out);
        if self.out.capacity() > 256 * 1024 {
            self.out = Vec::new();
        }
        res
    }
    fn shutdown(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Writes what the reading thread has batched before it blocks on the
/// socket (see `outbox`).
struct FlushBeforeRead(TcpStream);

impl Read for FlushBeforeRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::outbox::flush_deferred();
        self.0.read(buf)
    }
}

struct RecordReader {
    inner: BufReader<FlushBeforeRead>,
    transport: Arc<Transport>,
    nonce: u64,
    /// The record being read (reused: no allocation per record).
    sealed: Vec<u8>,
    plain: Vec<u8>,
    at: usize,
}

impl Read for RecordReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.plain.len() {
            let mut len = [0u8; 2];
            // A clean end between records is the end of the stream.
            match self.inner.read(&mut len[..1]) {
                Ok(0) => return Ok(0),
                Ok(_) => self.inner.read_exact(&mut len[1..])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let n = u16::from_be_bytes(len) as usize;
            self.sealed.resize(n, 0);
            self.inner.read_exact(&mut self.sealed)?;
            self.plain.resize(n, 0);
            let got = self
                .transport
                .state
                .read_message(self.nonce, &self.sealed, &mut self.plain)
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a session record failed authentication",
                    )
                })?;
            self.nonce += 1;
            self.plain.truncate(got);
            self.at = 0;
        }
        let n = buf.len().min(self.plain.len() - self.at);
        buf[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ids;
    use crate::security::Certificate;
    use std::net::TcpListener;

    /// A setup deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(10)
    }

    /// Runs a handshake between `client` and `server` over loopback; the
    /// client's result and what the server concluded.
    fn handshake(
        client_p: Principal,
        server_p: Principal,
    ) -> (Result<RemoteIdentity>, Result<RemoteIdentity>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            server(&mut s, far(), &server_p).map(|e| e.remote)
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let got = client(&mut c, far(), &client_p).map(|e| e.remote);
        (got, server.join().unwrap())
    }

    #[test]
    fn both_ends_learn_who_the_other_is() {
        let alice = Principal::new_self_blessed("alice").unwrap();
        let bob = Principal::new_self_blessed("bob").unwrap();
        let (a_key, b_key) = (alice.public_key(), bob.public_key());
        let (c, s) = handshake(alice, bob);
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.public_key(), b_key);
        assert_eq!(c.claimed_names(), vec!["bob"]);
        assert_eq!(s.public_key(), a_key);
    }

    #[test]
    fn blessings_presented_without_their_private_key_are_refused() {
        let alice = Principal::new_self_blessed("alice").unwrap();
        // Mallory presents alice's blessings but signs with her own key.
        let mallory = Principal {
            key: Principal::new_self_blessed("m").unwrap().key,
            blessings: alice.blessings().to_vec(),
            roots: vec![],
        };
        let (c, s) = handshake(mallory, Principal::new_self_blessed("server").unwrap());
        let e = c.unwrap_err();
        assert_eq!(e.id(), ids::NO_ACCESS);
        assert!(e.msg().contains("private key"), "{e}");
        assert!(s.is_err());
    }

    #[test]
    fn a_tampered_certificate_is_refused() {
        let root = Principal::new_self_blessed("root").unwrap();
        let mut p = Principal::new_blessed_by(&root, "alice", vec![]).unwrap();
        let mut chain: Vec<Certificate> = p.blessings[0].chain().to_vec();
        chain[1].extension = "admin".into();
        p.blessings = vec![Blessing::from_chain(chain)];
        let (c, s) = handshake(p, Principal::new_self_blessed("server").unwrap());
        let e = c.unwrap_err();
        assert_eq!(e.id(), ids::NO_ACCESS);
        assert!(e.msg().contains("bad signature"), "{e}");
        assert!(s.is_err());
    }

    #[test]
    fn a_record_changed_in_transit_fails_authentication() {
        let mut i = snow::Builder::new(NOISE.parse().unwrap())
            .build_initiator()
            .unwrap();
        let mut r = snow::Builder::new(NOISE.parse().unwrap())
            .build_responder()
            .unwrap();
        let mut b = [0u8; 1024];
        let mut p = [0u8; 1024];
        let n = i.write_message(&[], &mut b).unwrap();
        r.read_message(&b[..n], &mut p).unwrap();
        let n = r.write_message(&[], &mut b).unwrap();
        i.read_message(&b[..n], &mut p).unwrap();
        let sender = Transport {
            state: i.into_stateless_transport_mode().unwrap(),
        };
        let receiver = Transport {
            state: r.into_stateless_transport_mode().unwrap(),
        };
        let sealed = sender.seal(0, b"hello").unwrap();
        assert_eq!(receiver.open(0, &sealed).unwrap(), b"hello");
        let mut changed = sealed.clone();
        changed[0] ^= 1;
        assert!(receiver.open(0, &changed).is_err());
        // A replayed record under the next nonce fails too.
        assert!(receiver.open(1, &sealed).is_err());
    }
}
