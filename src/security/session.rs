//! The session step of a connection: authenticate both ends and encrypt
//! everything after.
//!
//! 1. A Noise `NN` handshake (`Noise_NN_25519_ChaChaPoly_BLAKE2s`, by the
//!    `snow` crate): two ephemeral X25519 keys, one round trip. Its
//!    prologue is both hellos, so a hello changed on its way (another
//!    routing id, version or session kind) fails the handshake.
//! 2. The server proves first: with its second handshake message it sends,
//!    encrypted, its blessings and an ed25519 signature, by the key those
//!    blessings name, over its role and the handshake hash. The hash is
//!    unique to this session, so the signature binds the blessings to it:
//!    a relay in the middle has another hash and cannot produce the
//!    signature without the private key.
//! 3. The client checks that proof, then presents only the blessings it
//!    chooses for that server ([`Principal::blessings_for`]: those whose
//!    peer caveats allow it), with its own signature; the others are
//!    withheld. A client whose key signs no blessing the server asks for
//!    may present none: it proves its key, and no name.
//! 4. The server answers with a verdict (accepted, or refused with the
//!    reason).
//!
//! That is three round trips with the hello, as before the server proved
//! first: the server's proof travels with its handshake message.
//!
//! Afterwards every byte travels in records: `len: u16 BE` and a
//! ChaCha20-Poly1305 ciphertext of at most 65,535 bytes, with one nonce
//! counter per direction. A record that fails authentication ends the
//! connection. Each direction changes its key (Noise's `Rekey`) after
//! 2^32 records or an hour, whichever comes first, announced by a record
//! with no plaintext: what is sent after it needs the new key.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use snow::StatelessTransportState;

use crate::error::{Error, Result};
use crate::outbox::Sink;
use crate::security::{Blessing, Principal, RemoteIdentity};

/// The Noise protocol name.
pub const NOISE: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
const MAX_RECORD: usize = 65_535;
const TAG: usize = 16;
const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// Most blessings one side may present.
pub const MAX_BLESSINGS: usize = 16;
/// What a proof's signature covers before the role and the hash.
const PROOF_CONTEXT: &[u8] = b"wspr session v2 ";

/// When a direction of a session changes its key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rekey {
    /// After this many records under one key.
    pub records: u64,
    /// After a key has been in use this long (checked when a record is
    /// sent).
    pub interval: Duration,
}

impl Rekey {
    /// 2^32 records or an hour.
    pub(crate) const DEFAULT: Rekey = Rekey {
        records: 1 << 32,
        interval: Duration::from_secs(3600),
    };
}

/// The byte streams of an established session.
pub(crate) struct Established {
    pub reader: Box<dyn Read + Send>,
    pub sink: Box<dyn Sink>,
    pub remote: RemoteIdentity,
}

/// The Noise prologue of a session: both hellos, as each side sent or
/// received them.
pub(crate) fn prologue(client_hello: &[u8], server_hello: &[u8]) -> Vec<u8> {
    let mut p = b"wspr hellos\0".to_vec();
    p.extend_from_slice(client_hello);
    p.extend_from_slice(server_hello);
    p
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

fn put_record(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn write_record(s: &mut impl Write, b: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(b.len() + 2);
    put_record(&mut out, b);
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
    move |e| Error::no_access(format!("{what}: {e}")).with_source(e)
}

fn noise_err(e: snow::Error) -> Error {
    Error::no_access(format!("session handshake failed: {e}"))
}

/// Both directions' ciphers of an established session. Sealing and
/// opening share the lock (the reading and the writing thread work at
/// once); only a change of key takes it alone, for a moment.
pub(crate) struct Transport {
    state: RwLock<StatelessTransportState>,
}

impl Transport {
    fn new(state: StatelessTransportState) -> Transport {
        Transport {
            state: RwLock::new(state),
        }
    }

    fn seal_into(&self, nonce: u64, plain: &[u8], out: &mut [u8]) -> Result<usize> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .write_message(nonce, plain, out)
            .map_err(noise_err)
    }

    fn open_into(&self, nonce: u64, sealed: &[u8], out: &mut [u8]) -> Result<usize> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .read_message(nonce, sealed, out)
            .map_err(|_| Error::no_access("a session record failed authentication"))
    }

    fn seal(&self, nonce: u64, plain: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; plain.len() + TAG];
        let n = self.seal_into(nonce, plain, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    fn open(&self, nonce: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; sealed.len()];
        let n = self.open_into(nonce, sealed, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    fn rekey_outgoing(&self) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .rekey_outgoing();
    }

    fn rekey_incoming(&self) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .rekey_incoming();
    }
}

/// A proof: `key: [u8; 32]`, `n: u8` (at most 16), `n` blessings of that
/// key, and the key's signature over the role and the handshake hash.
fn proof(principal: &Principal, blessings: &[Blessing], role: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut out = principal.public_key().to_vec();
    let n = blessings.len().min(MAX_BLESSINGS);
    out.push(n as u8);
    for b in &blessings[..n] {
        b.encode(&mut out);
    }
    out.extend_from_slice(&principal.sign(&signed(role, hash)));
    out
}

fn signed(role: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut m = PROOF_CONTEXT.to_vec();
    m.extend_from_slice(role);
    m.push(0);
    m.extend_from_slice(hash);
    m
}

/// Checks a peer's proof: its key signed this session's hash, every
/// blessing names that key, and every chain verifies. The one session
/// signature is checked before the chains (up to 16 of 32 certificates
/// each): a proof made for another session costs one verification, not
/// hundreds.
pub(crate) fn check_proof(b: &[u8], role: &[u8], hash: &[u8]) -> Result<RemoteIdentity> {
    let refuse = |why: &str| Error::no_access(format!("the peer's identity was refused: {why}"));
    let key: [u8; 32] = b
        .get(..32)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| refuse("the proof is cut short"))?;
    let n = *b.get(32).ok_or_else(|| refuse("the proof is cut short"))? as usize;
    if n > MAX_BLESSINGS {
        return Err(refuse("at most 16 blessings may be presented"));
    }
    let mut at = 33;
    let mut blessings = Vec::with_capacity(n);
    for _ in 0..n {
        let (bl, used) = Blessing::decode(&b[at..]).map_err(|e| refuse(e.msg()))?;
        at += used;
        blessings.push(bl);
    }
    if blessings.iter().any(|x| x.public_key() != key) {
        return Err(refuse("a blessing names another key"));
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
    rekey: Rekey,
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
            rekey,
            records: 0,
            keyed_at: Instant::now(),
        }),
        remote,
    })
}

fn builder(prologue: &[u8]) -> Result<snow::Builder<'_>> {
    snow::Builder::new(NOISE.parse().map_err(noise_err)?)
        .prologue(prologue)
        .map_err(noise_err)
}

/// The client side, all by `deadline`, after the hellos `prologue` holds:
/// returns the session and the server's identity. Nothing of the client's
/// is sent before the server has proven its key; then only the blessings
/// the client chooses for it.
pub(crate) fn client(
    stream: &mut TcpStream,
    deadline: Instant,
    principal: &Principal,
    prologue: &[u8],
) -> Result<Established> {
    let established_on = stream;
    let stream = &mut Deadline::new(established_on, deadline);
    let mut hs = builder(prologue)?.build_initiator().map_err(noise_err)?;
    let mut buf = vec![0u8; MAX_RECORD];
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    write_record(stream, &buf[..n]).map_err(io_err("session handshake"))?;
    let msg2 = read_record(stream).map_err(io_err("session handshake"))?;
    hs.read_message(&msg2, &mut buf).map_err(|e| {
        Error::no_access(format!(
            "session handshake failed ({e}): the hellos differ on the two ends (changed on the way?)"
        ))
    })?;
    let hash = hs.get_handshake_hash().to_vec();
    let t = Transport::new(hs.into_stateless_transport_mode().map_err(noise_err)?);
    let theirs = t.open(
        0,
        &read_record(stream).map_err(io_err("session handshake"))?,
    )?;
    let remote = check_proof(&theirs, b"server", &hash)?;
    let shown = principal.blessings_for(&principal.proven_names(&remote, ""));
    let mine = t.seal(0, &proof(principal, &shown, b"client", &hash))?;
    write_record(stream, &mine).map_err(io_err("session handshake"))?;
    let verdict = t.open(
        1,
        &read_record(stream).map_err(io_err("session handshake"))?,
    )?;
    match verdict.split_first() {
        Some((0, _)) => established(established_on, t, remote, 1, 2, Rekey::DEFAULT),
        Some((_, why)) => Err(Error::no_access(format!(
            "the server refused this client: {}",
            String::from_utf8_lossy(why)
        ))),
        None => Err(Error::no_access("the server sent an empty verdict")),
    }
}

/// The server side, all by `deadline`, after the hellos `prologue` holds:
/// returns the session and the client's identity. A client whose proof
/// fails is told why before the error is returned.
pub(crate) fn server(
    stream: &mut TcpStream,
    deadline: Instant,
    principal: &Principal,
    prologue: &[u8],
) -> Result<Established> {
    let (t, remote) = server_handshake(&mut Deadline::new(stream, deadline), principal, prologue)?;
    established(stream, t, remote, 2, 1, Rekey::DEFAULT)
}

/// The server's half of the handshake over any byte stream (the fuzz
/// target drives it with arbitrary bytes).
pub(crate) fn server_handshake(
    stream: &mut (impl Read + Write),
    principal: &Principal,
    prologue: &[u8],
) -> Result<(Transport, RemoteIdentity)> {
    let mut hs = builder(prologue)?.build_responder().map_err(noise_err)?;
    let mut buf = vec![0u8; MAX_RECORD];
    let msg1 = read_record(stream).map_err(io_err("session handshake"))?;
    hs.read_message(&msg1, &mut buf).map_err(noise_err)?;
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    let hash = hs.get_handshake_hash().to_vec();
    let t = Transport::new(hs.into_stateless_transport_mode().map_err(noise_err)?);
    // The handshake's answer and the server's proof, in one write.
    let mine = t.seal(
        0,
        &proof(principal, principal.blessings(), b"server", &hash),
    )?;
    let mut out = Vec::with_capacity(n + mine.len() + 4);
    put_record(&mut out, &buf[..n]);
    put_record(&mut out, &mine);
    stream
        .write_all(&out)
        .map_err(io_err("session handshake"))?;
    let theirs = t.open(
        0,
        &read_record(stream).map_err(io_err("session handshake (the client's proof)"))?,
    )?;
    let checked = check_proof(&theirs, b"client", &hash);
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
    rekey: Rekey,
    /// Records sealed under the current key, and since when it is used.
    records: u64,
    keyed_at: Instant,
}

impl RecordSink {
    /// Seals `chunk` as the next record at the end of `self.out`.
    fn push_record(&mut self, chunk: &[u8]) -> io::Result<()> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0, 0]);
        self.out.resize(start + 2 + chunk.len() + TAG, 0);
        let n = self
            .transport
            .seal_into(self.nonce, chunk, &mut self.out[start + 2..])
            .map_err(|e| io::Error::other(format!("encrypting: {e}")))?;
        self.nonce += 1;
        self.records += 1;
        self.out.truncate(start + 2 + n);
        self.out[start..start + 2].copy_from_slice(&(n as u16).to_be_bytes());
        Ok(())
    }

    /// Changes key if this one is due: a record with no plaintext, sealed
    /// with the old key, tells the reader to change too.
    fn rekey_if_due(&mut self) -> io::Result<()> {
        if self.records >= self.rekey.records || self.keyed_at.elapsed() >= self.rekey.interval {
            self.push_record(&[])?;
            self.transport.rekey_outgoing();
            self.records = 0;
            self.keyed_at = Instant::now();
        }
        Ok(())
    }
}

impl Sink for RecordSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.clear();
        for chunk in buf.chunks(MAX_PLAIN) {
            self.rekey_if_due()?;
            self.push_record(chunk)?;
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
                .open_into(self.nonce, &self.sealed, &mut self.plain)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.msg().to_string()))?;
            self.nonce += 1;
            self.plain.truncate(got);
            self.at = 0;
            if got == 0 {
                // The peer changed its key: so does this direction.
                self.transport.rekey_incoming();
            }
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
    use crate::security::{BlessingPattern, Caveat, Certificate};
    use std::net::TcpListener;

    /// A setup deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    const HELLOS: &[u8] = b"the hellos";

    /// Runs a handshake between `client` and `server` over loopback, each
    /// with its own prologue; the client's result and what the server
    /// concluded.
    fn handshake_with(
        client_p: Principal,
        client_prologue: &'static [u8],
        server_p: Principal,
        server_prologue: &'static [u8],
    ) -> (Result<RemoteIdentity>, Result<RemoteIdentity>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            server(&mut s, far(), &server_p, server_prologue).map(|e| e.remote)
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let got = client(&mut c, far(), &client_p, client_prologue).map(|e| e.remote);
        // (The client gives up by closing: the server is not left waiting.)
        drop(c);
        (got, server.join().unwrap())
    }

    fn handshake(
        client_p: Principal,
        server_p: Principal,
    ) -> (Result<RemoteIdentity>, Result<RemoteIdentity>) {
        handshake_with(client_p, HELLOS, server_p, HELLOS)
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
        assert_eq!(s.claimed_names(), vec!["alice"]);
    }

    /// A hello changed on its way (here: the prologue the two ends built
    /// from what each sent and received differs) fails the handshake.
    #[test]
    fn hellos_that_differ_fail_the_handshake() {
        let (c, s) = handshake_with(
            Principal::new_self_blessed("alice").unwrap(),
            b"hello for server A",
            Principal::new_self_blessed("bob").unwrap(),
            b"hello for server B",
        );
        let e = c.unwrap_err();
        assert_eq!(e.id(), ids::NO_ACCESS, "{e}");
        assert!(e.msg().contains("hellos differ"), "{e}");
        assert!(s.is_err(), "the server concluded nothing");
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
        assert!(e.msg().contains("another key"), "{e}");
        assert!(s.is_err());
        // Or claims alice's key too, and cannot sign for it.
        let hash = [7u8; 32];
        let mallory = Principal::new_self_blessed("m").unwrap();
        let mut forged = proof(&mallory, alice.blessings(), b"client", &hash);
        forged[..32].copy_from_slice(&alice.public_key());
        let e = check_proof(&forged, b"client", &hash).unwrap_err();
        assert!(e.msg().contains("private key"), "{e}");
        // The same proof made by alice herself passes, for this hash and
        // role only.
        let real = proof(&alice, alice.blessings(), b"client", &hash);
        assert!(check_proof(&real, b"client", &hash).is_ok());
        assert!(check_proof(&real, b"server", &hash).is_err());
        assert!(check_proof(&real, b"client", &[8u8; 32]).is_err());
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

    /// The server proves who it is first; a server whose proof fails gets
    /// nothing of the client's: no blessing, no signature.
    #[test]
    fn a_server_that_fails_its_proof_learns_nothing_of_the_client() {
        let root = Principal::new_self_blessed("root").unwrap();
        let mut server_p = Principal::new_blessed_by(&root, "server", vec![]).unwrap();
        let mut chain: Vec<Certificate> = server_p.blessings[0].chain().to_vec();
        chain[1].extension = "bank".into();
        server_p.blessings = vec![Blessing::from_chain(chain)];
        let (c, s) = handshake(Principal::new_self_blessed("alice").unwrap(), server_p);
        let e = c.unwrap_err();
        assert!(e.msg().contains("bad signature"), "{e}");
        let e = s.unwrap_err();
        assert!(e.msg().contains("the client's proof"), "{e}");
    }

    /// The client presents only the blessings meant for the server it
    /// reached: one restricted to bank/... is withheld from a shop.
    #[test]
    fn a_client_presents_only_the_blessings_meant_for_that_server() {
        let bank_root = Principal::new_self_blessed("bank").unwrap();
        let mut alice = Principal::new_self_blessed("alice").unwrap();
        alice.trust_root_of(&bank_root.blessings()[0]).unwrap();
        let only_bank = Caveat::PeerBlessings(vec![BlessingPattern::new("bank/...").unwrap()]);
        let account = bank_root
            .bless(&alice.public_key(), "customer", vec![only_bank])
            .unwrap();
        alice.add_blessing(account).unwrap();
        let key = alice.key.clone();
        let copy = |p: &Principal| Principal {
            key: key.clone(),
            blessings: p.blessings.clone(),
            roots: p.roots.clone(),
        };
        let teller = Principal::new_blessed_by(&bank_root, "teller", vec![]).unwrap();
        let (_, s) = handshake(copy(&alice), teller);
        assert_eq!(
            s.unwrap().claimed_names(),
            vec!["bank/customer", "alice"],
            "the bank sees both"
        );
        let (_, s) = handshake(copy(&alice), Principal::new_self_blessed("shop").unwrap());
        assert_eq!(
            s.unwrap().claimed_names(),
            vec!["alice"],
            "the shop sees one"
        );
        // A server calling itself bank, under a root alice does not trust
        // for bank/..., proves no bank name to her: withheld too.
        let (_, s) = handshake(copy(&alice), Principal::new_self_blessed("bank").unwrap());
        assert_eq!(s.unwrap().claimed_names(), vec!["alice"]);
        // With nothing to show, a client proves its key and no name.
        let mut shy = copy(&alice);
        shy.blessings.retain(|b| b.name() == "bank/customer");
        let (c, s) = handshake(shy, Principal::new_self_blessed("shop").unwrap());
        c.unwrap();
        let s = s.unwrap();
        assert_eq!(s.public_key(), alice.public_key());
        assert!(s.blessings().is_empty());
    }

    /// Two transports from one NN handshake: (initiator's, responder's).
    fn transports() -> (Transport, Transport) {
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
        (
            Transport::new(i.into_stateless_transport_mode().unwrap()),
            Transport::new(r.into_stateless_transport_mode().unwrap()),
        )
    }

    #[test]
    fn a_record_changed_in_transit_fails_authentication() {
        let (sender, receiver) = transports();
        let sealed = sender.seal(0, b"hello").unwrap();
        assert_eq!(receiver.open(0, &sealed).unwrap(), b"hello");
        let mut changed = sealed.clone();
        changed[0] ^= 1;
        assert!(receiver.open(0, &changed).is_err());
        // A replayed record under the next nonce fails too.
        assert!(receiver.open(1, &sealed).is_err());
    }

    /// With a key change every 3 records, 10 writes arrive whole; the
    /// bytes on the wire after the first change do not open with the
    /// first key (kept by a receiver that never changes).
    #[test]
    fn each_direction_changes_its_key() {
        let (sender, receiver) = transports();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let rekey = Rekey {
            records: 3,
            interval: Duration::from_secs(3600),
        };
        let anyone = RemoteIdentity::new([0; 32], vec![]);
        let mut w = established(&a, sender, anyone.clone(), 0, 0, rekey).unwrap();
        let mut r = established(&b, receiver, anyone, 0, 0, Rekey::DEFAULT).unwrap();
        let messages: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + i as usize]).collect();
        for m in &messages {
            w.sink.write_all(m).unwrap();
        }
        w.sink.shutdown();
        let mut got = Vec::new();
        r.reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, messages.concat());

        // Record by record (the sink's socket is not written to here): 3
        // under the first key, the change, then the next key; what follows
        // the change does not open with the first key.
        let (sender, receiver) = transports();
        let receiver = Arc::new(receiver);
        let mut sink = RecordSink {
            stream: TcpStream::connect(l.local_addr().unwrap()).unwrap(),
            transport: Arc::new(sender),
            nonce: 0,
            out: Vec::new(),
            rekey,
            records: 0,
            keyed_at: Instant::now(),
        };
        let mut wire = Vec::new();
        for m in &messages[..5] {
            sink.out.clear();
            sink.rekey_if_due().unwrap();
            sink.push_record(m).unwrap();
            wire.extend_from_slice(&sink.out);
        }
        let mut records = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let n = u16::from_be_bytes([wire[at], wire[at + 1]]) as usize;
            records.push(wire[at + 2..at + 2 + n].to_vec());
            at += 2 + n;
        }
        assert_eq!(records.len(), 6, "5 records and one change of key");
        for (i, rec) in records[..3].iter().enumerate() {
            assert_eq!(receiver.open(i as u64, rec).unwrap(), messages[i]);
        }
        assert_eq!(receiver.open(3, &records[3]).unwrap(), b"", "the change");
        assert!(
            receiver.open(4, &records[4]).is_err(),
            "the old key opens what follows a change"
        );
        receiver.rekey_incoming();
        assert_eq!(receiver.open(4, &records[4]).unwrap(), messages[3]);
    }
}
