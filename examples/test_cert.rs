//! Writes a new self-signed TLS certificate and its key, for tests that
//! run `wsprd serve --tls-cert --tls-key` (the browser tests trust it by
//! its public key's hash, on Chromium's command line).
//!
//!     cargo run --example test_cert -- DIR NAME...
//!
//! writes `DIR/cert.pem` and `DIR/key.pem`, for the DNS names or IP
//! addresses NAME... (default: localhost and 127.0.0.1).

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: test_cert DIR [NAME...]");
        std::process::exit(2);
    };
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into()];
    }
    let dir = std::path::Path::new(&dir);
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| e.to_string())
        .and_then(|ck| {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("cert.pem"), ck.cert.pem()).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = made {
        eprintln!("test_cert: {e}");
        std::process::exit(1);
    }
}
