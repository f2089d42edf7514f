//! Certificates made by the tests (rcgen), and TLS clients that trust
//! them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// A self-signed certificate and its key, as PEM files in a directory of
/// their own.
pub struct TestCert {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

/// A fresh directory under the tests' temporary directory.
pub fn scratch(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A self-signed certificate for `names` (DNS names or IP addresses),
/// written to `cert.pem` and `key.pem` in a fresh directory.
pub fn make_cert(what: &str, names: &[&str]) -> TestCert {
    let dir = scratch(what);
    write_cert(&dir, names)
}

/// Writes a new self-signed certificate for `names` over `dir`'s
/// `cert.pem` and `key.pem`.
pub fn write_cert(dir: &Path, names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    TestCert {
        dir: dir.to_path_buf(),
        cert,
        key,
        der: ck.cert.der().clone(),
    }
}

/// A TLS client that trusts exactly `certs`.
pub fn client_config(certs: &[&TestCert]) -> Arc<rustls::ClientConfig> {
    client_config_versions(certs, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// Like [`client_config`], offering only `versions`.
pub fn client_config_versions(
    certs: &[&TestCert],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The daemon's TLS settings for `cert`.
pub fn tls_config(cert: &TestCert) -> wspr::wsprd::TlsConfig {
    wspr::wsprd::TlsConfig::new(&cert.cert, &cert.key)
}
