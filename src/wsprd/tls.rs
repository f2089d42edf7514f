//! TLS for the HTTP listener (rustls, with ring's cryptography): the
//! certificate and its reloading, each connection's handshake (part of
//! its setup, within the setup deadline), and the stream a connection's
//! request is read from and answered on, with or without TLS.
//!
//! Only TLS 1.3 and 1.2 are offered, and ALPN names `http/1.1` (a
//! websocket upgrade is HTTP/1.1). Once a connection is upgraded to a
//! pipe, its TLS state is shared by the pipe's reader and the writers of
//! its outbox (`ws`): socket I/O is never done under its lock.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::admission::Ticket;
use crate::error::{Error, Result};

/// TLS for the HTTP listener: a certificate chain and its private key, as
/// PEM files. They are read when the daemon starts and again on
/// [`Daemon::reload_tls`](crate::wsprd::Daemon::reload_tls) (`wsprd serve`: SIGHUP).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain, the daemon's own certificate first.
    pub cert: std::path::PathBuf,
    /// Its private key (PKCS#8, or SEC1 or PKCS#1).
    pub key: std::path::PathBuf,
}

impl TlsConfig {
    /// The certificate chain in `cert` and its key in `key`.
    pub fn new(cert: impl Into<std::path::PathBuf>, key: impl Into<std::path::PathBuf>) -> Self {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// The listener's TLS: its settings and the certificate in use.
pub(crate) struct Tls {
    config: Arc<ServerConfig>,
    certs: Arc<Certs>,
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
}

/// The certificate every handshake gets (whatever name the client asks
/// for: a client that asked for another name refuses it).
#[derive(Debug)]
struct Certs {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Reads the certificate chain and its key, and checks that they belong
/// together.
fn load(files: &TlsConfig, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>> {
    let cert_file = files.cert.display();
    let key_file = files.key.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::bad_arg(format!("TLS certificate {cert_file}: {e}")))?;
    if chain.is_empty() {
        return Err(Error::bad_arg(format!(
            "TLS certificate {cert_file}: no certificate in it (PEM, \"BEGIN CERTIFICATE\")"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| Error::bad_arg(format!("TLS key {key_file}: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::bad_arg(format!("TLS key {key_file}: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        Error::bad_arg(format!(
            "TLS key {key_file} is not the key of certificate {cert_file}: {e}"
        ))
    })?;
    Ok(Arc::new(certified))
}

/// How a connection's setup went.
pub(crate) enum Setup {
    /// The handshake is done.
    Done(Stream),
    /// The client spoke plain HTTP to the TLS port.
    PlainHttp(Stream),
    /// It failed or timed out; why (for the log).
    Failed(String),
}

impl Tls {
    /// Reads the certificate and key; a `BadArg` naming the file if
    /// either cannot be used.
    pub(crate) fn new(files: &TlsConfig) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(Certs {
            current: RwLock::new(load(files, &provider)?),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::internal(format!("TLS settings: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            certs,
            files: files.clone(),
            provider,
        })
    }

    /// Reads the certificate and key again (SIGHUP). If they cannot be
    /// used, the certificate in use stays, and the error says why.
    pub(crate) fn reload(&self) -> Result<()> {
        let fresh = load(&self.files, &self.provider)?;
        *self
            .certs
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The server side of a handshake on `tcp`, by `deadline`. The
    /// connection counts as speaking once its first byte is in.
    pub(crate) fn handshake(&self, tcp: TcpStream, deadline: Instant, ticket: &Ticket) -> Setup {
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut first = [0u8; 1];
        loop {
            if left().is_zero() {
                return Setup::Failed("no TLS handshake within the setup time".into());
            }
            if let Err(e) = tcp.set_read_timeout(Some(left())) {
                return Setup::Failed(e.to_string());
            }
            match tcp.peek(&mut first) {
                Ok(0) => return Setup::Failed("closed before its TLS handshake".into()),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Setup::Failed(format!("waiting for its TLS handshake: {e}")),
            }
        }
        ticket.spoke();
        // A TLS record starts with its type (22 for a handshake); a plain
        // HTTP request with a method's letters.
        if first[0].is_ascii_alphabetic() {
            return Setup::PlainHttp(Stream::Plain(tcp));
        }
        let mut conn = match ServerConnection::new(self.config.clone()) {
            Ok(c) => c,
            Err(e) => return Setup::Failed(e.to_string()),
        };
        let mut tcp = tcp;
        while conn.is_handshaking() {
            if left().is_zero() {
                return Setup::Failed(
                    "the TLS handshake did not finish within the setup time".into(),
                );
            }
            if let Err(e) = tcp.set_read_timeout(Some(left())) {
                return Setup::Failed(e.to_string());
            }
            match conn.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Setup::Failed(format!("TLS handshake: {e}")),
            }
        }
        Setup::Done(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }
}

/// Runs `f(tcp)` on a thread of its own named `name`, joined: the deep
/// calls of a TLS handshake touch that thread's stack, which goes with it,
/// not the stack of the connection's thread, which then lives as long as
/// its pipe (it would keep those pages, a few KiB a pipe). On the calling
/// thread if no thread can be had. None if `f` panicked.
pub(crate) fn apart<T, F>(name: String, tcp: TcpStream, f: F) -> Option<T>
where
    T: Send,
    F: FnOnce(TcpStream) -> T + Send,
{
    std::thread::scope(|scope| {
        // (The socket and `f` go to the thread once it runs; if it cannot
        // be started, they are still here.)
        let (tx, rx) = std::sync::mpsc::channel::<(TcpStream, F)>();
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(256 * 1024)
            .spawn_scoped(scope, move || rx.recv().ok().map(|(tcp, f)| f(tcp)));
        match spawned {
            Ok(h) => match tx.send((tcp, f)) {
                Ok(()) => h.join().ok().flatten(),
                Err(back) => {
                    let (tcp, f) = back.0;
                    Some(f(tcp))
                }
            },
            Err(e) => {
                log::warn!("no thread to set a connection up ({e}); done on its own");
                Some(f(tcp))
            }
        }
    })
}

/// A connection before its upgrade: its request is read and answered
/// through this, with TLS or without.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// The socket.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// The name the client asked for in its TLS handshake (SNI), if any.
    pub(crate) fn server_name(&self) -> Option<&str> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.conn.server_name(),
        }
    }

    /// Ends the writing side: TLS's close_notify, then the socket's.
    pub(crate) fn shutdown_write(&mut self) {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }

    /// Reads and drops what the client still sends, for at most `wait`
    /// and 256 KiB (so that closing does not reset the connection and
    /// destroy an answer before it is read). Raw bytes: nothing of it is
    /// decrypted.
    pub(crate) fn drain(&self, wait: Duration) {
        let mut tcp = self.tcp();
        let _ = tcp.set_read_timeout(Some(wait));
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 256 * 1024 {
            match tcp.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }

    /// The socket and, with TLS, its state, for the pipe it becomes.
    pub(crate) fn into_transport(self) -> Transport {
        match self {
            Stream::Plain(tcp) => Transport { tcp, tls: None },
            Stream::Tls(s) => {
                let StreamOwned { mut conn, sock } = *s;
                // The pipe's writers drain after each record they make.
                conn.set_buffer_limit(None);
                Transport {
                    tcp: sock,
                    tls: Some(Arc::new(Mutex::new(conn))),
                }
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A pipe's connection: the socket, and its TLS state when it has one
/// (shared by the reader and the outbox's writers; locked only to
/// encrypt or decrypt, never across the socket's I/O).
pub(crate) struct Transport {
    pub tcp: TcpStream,
    pub tls: Option<Arc<Mutex<ServerConnection>>>,
}
