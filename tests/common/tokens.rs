//! Token issuers made by the tests: key pairs (rcgen), their public keys
//! as the daemon reads them, and JWTs they sign (jsonwebtoken).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The audience the tests' daemons take.
pub const AUDIENCE: &str = "https://wspr.test";

/// An issuer: its name, its key pair, its public key's file.
pub struct TestIssuer {
    pub name: String,
    pub alg: Algorithm,
    key: EncodingKey,
    pub public_pem: String,
    pub key_file: PathBuf,
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestIssuer {
    /// An Ed25519 issuer (EdDSA).
    pub fn ed25519(name: &str) -> TestIssuer {
        Self::make(name, &rcgen::PKCS_ED25519, Algorithm::EdDSA)
    }

    /// An ECDSA P-256 issuer (ES256).
    pub fn p256(name: &str) -> TestIssuer {
        Self::make(name, &rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
    }

    fn make(name: &str, alg: &'static rcgen::SignatureAlgorithm, jwt: Algorithm) -> TestIssuer {
        let kp = rcgen::KeyPair::generate_for(alg).unwrap();
        let private = kp.serialize_pem();
        let key = match jwt {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        };
        let public_pem = kp.public_key_pem();
        let key_file = super::tls::scratch(&format!("issuer-{name}")).join("public.pem");
        std::fs::write(&key_file, &public_pem).unwrap();
        TestIssuer {
            name: name.to_string(),
            alg: jwt,
            key,
            public_pem,
            key_file,
        }
    }

    /// The daemon's setting for this issuer.
    pub fn config(&self) -> wspr::wsprd::TokenIssuer {
        wspr::wsprd::TokenIssuer::new(&self.name, &self.key_file)
    }

    /// Standard claims for `sub`, valid for `secs` seconds.
    pub fn claims(&self, sub: &str, secs: u64) -> Value {
        json!({"iss": self.name, "sub": sub, "aud": AUDIENCE, "exp": now_secs() + secs, "iat": now_secs()})
    }

    /// A token of `claims`, signed by this issuer.
    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key).unwrap()
    }

    /// A token for `sub`, valid for `secs` seconds.
    pub fn token(&self, sub: &str, secs: u64) -> String {
        self.sign(&self.claims(sub, secs))
    }
}

/// Base64url without padding (to forge tokens by hand).
pub fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token with header `header` and claims `claims` and no signature
/// (`alg: none`, or for a signature made by hand).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}
