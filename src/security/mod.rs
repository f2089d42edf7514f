//! Identities: principals (a key pair and the blessings that name it),
//! authenticated and encrypted sessions, and authorization.
//!
//! A principal trusts a set of *roots* (public keys). A peer's blessing
//! name counts only when its chain verifies, its root is trusted, and every
//! caveat holds for the call at hand: those are the names the peer
//! *proved*. See `docs/security.md`.
//!
//! ```
//! use wspr::security::{Principal, Caveat, CaveatContext};
//! let alice = Principal::new_self_blessed("alice")?;
//! let phone = Principal::new_self_blessed("phone")?;
//! let b = alice.bless(&phone.public_key(), "phone", vec![Caveat::Method(vec!["Foo".into()])])?;
//! assert_eq!(b.name(), "alice/phone");
//! b.verify()?;
//! let ctx = |m| CaveatContext { method: m, peer_names: &[], now: std::time::SystemTime::now() };
//! assert!(b.holds(&ctx("Foo")) && !b.holds(&ctx("Bar")));
//! # Ok::<(), wspr::Error>(())
//! ```

pub mod access;
mod authorizer;
mod blessing;
pub(crate) mod session;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

pub use authorizer::{AclAuthorizer, Delegation, SameFamily};
pub use blessing::{
    Blessing, BlessingPattern, Caveat, CaveatContext, Certificate, check_extension, hex, unhex,
};

use crate::error::{Error, Result};

/// The credentials file inside a credentials directory.
pub const CREDENTIALS_FILE: &str = "principal.json";

/// A key pair, the blessings that name its public key, and the roots it
/// trusts.
pub struct Principal {
    key: SigningKey,
    blessings: Vec<Blessing>,
    roots: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("public_key", &hex(&self.public_key()))
            .field("names", &self.names())
            .finish()
    }
}

fn random_key() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(SigningKey::from_bytes(&seed))
}

impl Principal {
    /// A new key whose only blessing is a self-signed root named `name`,
    /// trusting its own root.
    pub fn new_self_blessed(name: &str) -> Result<Principal> {
        check_extension(name)?;
        let key = random_key()?;
        let public_key = key.verifying_key().to_bytes();
        let mut cert = Certificate {
            extension: name.to_string(),
            public_key,
            caveats: vec![],
            signature: [0; 64],
        };
        cert.signature = key.sign(&cert.signing_input(None)).to_bytes();
        Ok(Principal {
            key,
            blessings: vec![Blessing::from_chain(vec![cert])],
            roots: vec![public_key],
        })
    }

    /// A new key blessed by `blesser` as `<blesser>/<extension>`, trusting
    /// what `blesser` trusts.
    pub fn new_blessed_by(
        blesser: &Principal,
        extension: &str,
        caveats: Vec<Caveat>,
    ) -> Result<Principal> {
        let key = random_key()?;
        let b = blesser.bless(&key.verifying_key().to_bytes(), extension, caveats)?;
        Ok(Principal {
            key,
            blessings: vec![b],
            roots: blesser.roots.clone(),
        })
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The blessings, the default (used to bless others) first.
    pub fn blessings(&self) -> &[Blessing] {
        &self.blessings
    }

    /// The blessings' names.
    pub fn names(&self) -> Vec<String> {
        self.blessings.iter().map(Blessing::name).collect()
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[[u8; 32]] {
        &self.roots
    }

    /// Trusts `root` (a public key).
    pub fn trust(&mut self, root: [u8; 32]) {
        if !self.roots.contains(&root) {
            self.roots.push(root);
        }
    }

    /// Whether `b`'s root is trusted.
    pub fn recognizes(&self, b: &Blessing) -> bool {
        self.roots.contains(&b.root_key())
    }

    /// Adds a blessing of this principal's key, made the default.
    pub fn add_blessing(&mut self, b: Blessing) -> Result<()> {
        b.verify()?;
        if b.public_key() != self.public_key() {
            return Err(Error::bad_arg("the blessing is for another key"));
        }
        self.blessings.retain(|x| x.name() != b.name());
        self.blessings.insert(0, b);
        Ok(())
    }

    /// Blesses `blessee` as `<default blessing>/<extension>` with `caveats`.
    pub fn bless(
        &self,
        blessee: &[u8; 32],
        extension: &str,
        caveats: Vec<Caveat>,
    ) -> Result<Blessing> {
        check_extension(extension)?;
        blessing::check_caveats(&caveats)?;
        let base = self
            .blessings
            .first()
            .ok_or_else(|| Error::no_access("this principal has no blessing to extend"))?;
        if base.chain().len() >= blessing::MAX_CHAIN {
            return Err(Error::bad_arg("the blessing chain is at its longest"));
        }
        let previous = base.chain().last().map(|c| c.signature);
        let mut cert = Certificate {
            extension: extension.to_string(),
            public_key: *blessee,
            caveats,
            signature: [0; 64],
        };
        cert.signature = self
            .key
            .sign(&cert.signing_input(previous.as_ref()))
            .to_bytes();
        let mut chain = base.chain().to_vec();
        chain.push(cert);
        Ok(Blessing::from_chain(chain))
    }

    /// The same key named only by `blessing`, trusting what this
    /// principal trusts and the blessing's root.
    pub fn with_blessing(&self, blessing: Blessing) -> Result<Principal> {
        let mut p = Principal {
            key: self.key.clone(),
            blessings: vec![],
            roots: self.roots.clone(),
        };
        p.trust(blessing.root_key());
        p.add_blessing(blessing)?;
        Ok(p)
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The names of `remote`'s blessings that hold for a call of `method`:
    /// trusted root, valid chain for the key the peer proved, every caveat
    /// met with this principal as the peer.
    pub fn proven_names(&self, remote: &crate::rpc::RemoteIdentity, method: &str) -> Vec<String> {
        let blessings = remote.blessings();
        self.proven(remote, method)
            .into_iter()
            .map(|i| blessings[i].name())
            .collect()
    }

    /// Which of `remote`'s blessings hold for a call of `method` (see
    /// [`proven_names`](Self::proven_names)): their indices in
    /// `remote.blessings()`.
    pub fn proven(&self, remote: &crate::rpc::RemoteIdentity, method: &str) -> Vec<usize> {
        let local = self.names();
        let ctx = CaveatContext {
            method,
            peer_names: &local,
            now: SystemTime::now(),
        };
        remote
            .blessings()
            .iter()
            .enumerate()
            .filter(|(_, b)| self.recognizes(b) && b.holds(&ctx))
            .map(|(i, _)| i)
            .collect()
    }

    /// The credentials directory to use: `WSPR_CREDENTIALS`, else
    /// `$XDG_CONFIG_HOME/wspr/credentials`, else
    /// `$HOME/.config/wspr/credentials`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("WSPR_CREDENTIALS").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("wspr").join("credentials")
    }

    /// Loads the principal in `dir`.
    pub fn load(dir: &Path) -> Result<Principal> {
        let path = dir.join(CREDENTIALS_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::no_exist(format!("credentials {}: {e}", path.display())))?;
        let stored: Stored = serde_json::from_str(&text)
            .map_err(|e| Error::bad_arg(format!("credentials {}: {e}", path.display())))?;
        let seed: [u8; 32] = unhex(&stored.key)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::bad_arg(format!("credentials {}: bad key", path.display())))?;
        let key = SigningKey::from_bytes(&seed);
        let mut p = Principal {
            key,
            blessings: vec![],
            roots: vec![],
        };
        for b in stored.blessings.iter().rev() {
            p.add_blessing(Blessing::from_hex(b)?)?;
        }
        for r in &stored.roots {
            let root: [u8; 32] = unhex(r).and_then(|k| k.try_into().ok()).ok_or_else(|| {
                Error::bad_arg(format!("credentials {}: bad root", path.display()))
            })?;
            p.trust(root);
        }
        Ok(p)
    }

    /// Writes the principal to `dir` (created with mode 0700; the file
    /// with mode 0600), replacing what is there.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = self.write_temp(dir)?;
        std::fs::rename(&tmp, dir.join(CREDENTIALS_FILE))
            .map_err(|e| Error::internal(format!("credentials {}: {e}", dir.display())))
    }

    fn write_temp(&self, dir: &Path) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |e: std::io::Error| Error::internal(format!("credentials {}: {e}", dir.display()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let stored = Stored {
            key: hex(self.key.as_bytes()),
            blessings: self.blessings.iter().map(Blessing::to_hex).collect(),
            roots: self.roots.iter().map(|r| hex(r)).collect(),
        };
        // Unique to this process and this write (threads may race too).
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{CREDENTIALS_FILE}.{}.{n}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(
            serde_json::to_string_pretty(&stored)
                .unwrap_or_default()
                .as_bytes(),
        )
        .and_then(|_| f.sync_all())
        .map_err(io)?;
        Ok(tmp)
    }

    /// Loads the principal in `dir`, or creates one self-blessed as `name`
    /// if there is none (safe when several processes start at once).
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Principal> {
        if dir.join(CREDENTIALS_FILE).exists() {
            return Principal::load(dir);
        }
        let p = Principal::new_self_blessed(name)?;
        let tmp = p.write_temp(dir)?;
        let linked = std::fs::hard_link(&tmp, dir.join(CREDENTIALS_FILE));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                log::info!("created credentials in {} for {name}", dir.display());
                Ok(p)
            }
            // Another process created it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Principal::load(dir),
            Err(e) => Err(Error::internal(format!(
                "credentials {}: {e}",
                dir.display()
            ))),
        }
    }

    /// The default name for a new principal: the user's login name.
    pub fn default_name() -> String {
        std::env::var("USER")
            .ok()
            .filter(|u| check_extension(u).is_ok())
            .unwrap_or_else(|| "wspr".to_string())
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    blessings: Vec<String>,
    roots: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caveats_past_what_a_reader_takes_are_refused() {
        let root = Principal::new_self_blessed("root").unwrap();
        let bob = Principal::new_self_blessed("bob").unwrap();
        let many = vec![Caveat::Expiry(u64::MAX); blessing::MAX_CAVEATS + 1];
        let e = root.bless(&bob.public_key(), "bob", many).unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        let list = vec!["M".to_string(); blessing::MAX_CAVEATS + 1];
        let e = root
            .bless(&bob.public_key(), "bob", vec![Caveat::Method(list)])
            .unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        // At the limit, the blessing reads back.
        let ok = vec![Caveat::Expiry(u64::MAX); blessing::MAX_CAVEATS];
        let b = root.bless(&bob.public_key(), "bob", ok).unwrap();
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        assert_eq!(Blessing::decode(&bytes).unwrap().0, b);
    }

    #[test]
    fn bless_and_tamper() {
        let root = Principal::new_self_blessed("root").unwrap();
        let alice = Principal::new_blessed_by(&root, "alice", vec![]).unwrap();
        assert_eq!(alice.names(), vec!["root/alice"]);
        let phone = Principal::new_self_blessed("p").unwrap();
        let b = alice.bless(&phone.public_key(), "phone", vec![]).unwrap();
        assert_eq!(b.name(), "root/alice/phone");
        b.verify().unwrap();
        assert!(alice.recognizes(&b));
        // Change a byte of a certificate: the chain no longer verifies.
        let mut chain = b.chain().to_vec();
        chain[1].extension = "mallory".into();
        assert!(Blessing::from_chain(chain).verify().is_err());
        let mut chain = b.chain().to_vec();
        chain[2].public_key[0] ^= 1;
        assert!(Blessing::from_chain(chain).verify().is_err());
        // Round trip through hex.
        assert_eq!(Blessing::from_hex(&b.to_hex()).unwrap(), b);
    }

    #[test]
    fn credentials_on_disk() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("wspr-cred-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = Principal::load_or_create(&dir, "alice").unwrap();
        let again = Principal::load_or_create(&dir, "ignored").unwrap();
        assert_eq!(p.public_key(), again.public_key());
        assert_eq!(again.names(), vec!["alice"]);
        let mode = std::fs::metadata(dir.join(CREDENTIALS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
