//! Identities: principals (a key pair and the blessings that name it),
//! authenticated and encrypted sessions, and authorization.
//!
//! A principal trusts a set of *roots*: public keys, each for the blessing
//! names that match a pattern (`alice/...`), as Vanadium's `BlessingRoots`.
//! A peer's blessing name counts only when its chain verifies, its root is
//! trusted for that name, and every caveat holds for the call at hand:
//! those are the names the peer *proved*. See `docs/security.md`.
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
//! assert!(alice.recognizes(&b));
//! // Alice's root is trusted for alice/... only: a root of another key
//! // that calls itself alice is not.
//! let mallory = Principal::new_self_blessed("mallory")?;
//! assert!(!alice.recognizes(&mallory.bless_self("alice")?));
//! # Ok::<(), wspr::Error>(())
//! ```

pub mod access;
mod authorizer;
mod blessing;
mod credentials;
mod remote;
pub(crate) mod session;

use std::time::SystemTime;

use ed25519_dalek::{Signer, SigningKey};

pub use authorizer::{AclAuthorizer, AllowAll, Authorizer, CallInfo, Delegation, SameFamily};
pub(crate) use blessing::first_unseen;
pub use blessing::{
    Blessing, BlessingPattern, Caveat, CaveatContext, Certificate, MAX_EXTENSION, check_extension,
    hex, unhex,
};
pub use credentials::CREDENTIALS_FILE;
pub use remote::RemoteIdentity;

use crate::error::{Error, Result};

/// A root key trusted for the blessing names that match `pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedRoot {
    /// The root's public key.
    pub key: [u8; 32],
    /// The names it is trusted for.
    pub pattern: BlessingPattern,
}

/// A key pair, the blessings that name its public key, and the roots it
/// trusts.
pub struct Principal {
    key: SigningKey,
    blessings: Vec<Blessing>,
    roots: Vec<TrustedRoot>,
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

/// `<the root certificate's name>/...`: what a root is trusted for unless
/// told otherwise.
fn own_names(b: &Blessing) -> Result<BlessingPattern> {
    let root = b
        .chain()
        .first()
        .ok_or_else(|| Error::bad_arg("an empty blessing"))?;
    BlessingPattern::and_below(&root.extension)
}

impl Principal {
    /// A new key whose only blessing is a self-signed root named `name`,
    /// trusting its own root for `name/...`.
    pub fn new_self_blessed(name: &str) -> Result<Principal> {
        let mut p = Principal {
            key: random_key()?,
            blessings: vec![],
            roots: vec![],
        };
        let b = p.bless_self(name)?;
        p.trust_root_of(&b)?;
        p.blessings.push(b);
        Ok(p)
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
    pub fn roots(&self) -> &[TrustedRoot] {
        &self.roots
    }

    /// Trusts `root` (a public key) for the names `pattern` matches.
    pub fn trust(&mut self, root: [u8; 32], pattern: BlessingPattern) {
        let r = TrustedRoot { key: root, pattern };
        if !self.roots.contains(&r) {
            self.roots.push(r);
        }
    }

    /// Trusts `b`'s root for its own name and below (`alice/...` for a
    /// chain that starts at a root named `alice`): what being blessed by
    /// someone means, and nothing more.
    pub fn trust_root_of(&mut self, b: &Blessing) -> Result<()> {
        let pattern = own_names(b)?;
        self.trust(b.root_key(), pattern);
        Ok(())
    }

    /// Whether `b`'s root is trusted for `b`'s name (the chain itself is
    /// not checked here; see [`Blessing::verify`]).
    pub fn recognizes(&self, b: &Blessing) -> bool {
        let key = b.root_key();
        let mut of_key = self.roots.iter().filter(|r| r.key == key).peekable();
        // (The name is put together only for a root key that is trusted.)
        if of_key.peek().is_none() {
            return false;
        }
        let name = b.name();
        of_key.any(|r| r.pattern.matches(&name))
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

    /// A new root blessing of this key named `name` (self-signed; it
    /// counts only where someone trusts this key for that name).
    pub fn bless_self(&self, name: &str) -> Result<Blessing> {
        check_extension(name)?;
        let mut cert = Certificate {
            extension: name.to_string(),
            public_key: self.public_key(),
            caveats: vec![],
            signature: [0; 64],
        };
        cert.signature = self.key.sign(&cert.signing_input(None)).to_bytes();
        Ok(Blessing::from_chain(vec![cert]))
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
    /// principal trusts and the blessing's root for the blessing's own
    /// root name.
    pub fn with_blessing(&self, blessing: Blessing) -> Result<Principal> {
        let mut p = Principal {
            key: self.key.clone(),
            blessings: vec![],
            roots: self.roots.clone(),
        };
        p.trust_root_of(&blessing)?;
        p.add_blessing(blessing)?;
        Ok(p)
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The names of `remote`'s blessings that hold for a call of `method`:
    /// root trusted for the name, valid chain for the key the peer proved,
    /// every caveat met with this principal as the peer.
    pub fn proven_names(&self, remote: &RemoteIdentity, method: &str) -> Vec<String> {
        let blessings = remote.blessings();
        self.proven(remote, method)
            .into_iter()
            .map(|i| blessings[i].name())
            .collect()
    }

    /// Which of `remote`'s blessings hold for a call of `method` (see
    /// [`proven_names`](Self::proven_names)): their indices in
    /// `remote.blessings()`.
    pub fn proven(&self, remote: &RemoteIdentity, method: &str) -> Vec<usize> {
        // This principal's names matter only to peer caveats: they are
        // worked out (a string per blessing) only for a remote blessing
        // that has one, not for every call.
        let peer_caveats = remote.blessings().iter().any(|b| {
            b.chain()
                .iter()
                .flat_map(|c| &c.caveats)
                .any(|c| matches!(c, Caveat::PeerBlessings(_)))
        });
        let local = if peer_caveats {
            self.names()
        } else {
            Vec::new()
        };
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

    /// The blessings this principal presents to a peer that proved
    /// `peer_names` (the session's choice, made after the server proved
    /// who it is): those whose peer caveats allow that peer and that have
    /// not expired, the default first. The others are withheld, so a
    /// server learns only the names meant for it.
    pub fn blessings_for(&self, peer_names: &[String]) -> Vec<Blessing> {
        let now = SystemTime::now();
        self.blessings
            .iter()
            .filter(|b| {
                b.chain().iter().flat_map(|c| &c.caveats).all(|c| match c {
                    Caveat::PeerBlessings(_) | Caveat::Expiry(_) => c.holds(&CaveatContext {
                        method: "",
                        peer_names,
                        now,
                    }),
                    // Decided per call, by the server.
                    Caveat::Method(_) => true,
                })
            })
            .cloned()
            .collect()
    }

    /// The default name for a new principal: the user's login name.
    pub fn default_name() -> String {
        std::env::var("USER")
            .ok()
            .filter(|u| check_extension(u).is_ok())
            .unwrap_or_else(|| "wspr".to_string())
    }
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

    /// Bob, trusted by Alice for bob/... because he blessed her, makes a
    /// root of his own key named alice and mints alice/admin with it: Alice
    /// does not recognize it. Her own alice/... still counts.
    #[test]
    fn a_root_cannot_issue_a_name_it_was_not_trusted_for() {
        let bob = Principal::new_self_blessed("bob").unwrap();
        let alice_alone = Principal::new_self_blessed("alice").unwrap();
        let alice = alice_alone
            .with_blessing(
                bob.bless(&alice_alone.public_key(), "alice", vec![])
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(alice.names(), vec!["bob/alice"]);
        let bob_root: Vec<_> = alice
            .roots()
            .iter()
            .filter(|r| r.key == bob.public_key())
            .map(|r| r.pattern.as_str())
            .collect();
        assert_eq!(bob_root, vec!["bob/..."]);
        // Bob's forged root, and a name under it.
        let forged = Principal {
            key: bob.key.clone(),
            blessings: vec![bob.bless_self("alice").unwrap()],
            roots: vec![],
        };
        let mallory = Principal::new_self_blessed("m").unwrap();
        let admin = forged
            .bless(&mallory.public_key(), "admin", vec![])
            .unwrap();
        assert_eq!(admin.name(), "alice/admin");
        admin.verify().unwrap();
        assert!(
            !alice.recognizes(&admin),
            "a foreign root minted alice/admin"
        );
        assert!(!alice.recognizes(&forged.blessings()[0]));
        // What Bob may name, and what Alice's own root names, still count.
        let carol = Principal::new_self_blessed("c").unwrap();
        assert!(alice.recognizes(&bob.bless(&carol.public_key(), "carol", vec![]).unwrap()));
        assert!(alice.recognizes(&alice_alone.bless(&carol.public_key(), "x", vec![]).unwrap()));
    }

    /// A client shows a server only the blessings meant for it.
    #[test]
    fn blessings_for_a_peer_follow_their_peer_caveats() {
        let root = Principal::new_self_blessed("root").unwrap();
        let mut me = Principal::new_self_blessed("me").unwrap();
        let pk = me.public_key();
        let pattern = |p: &str| BlessingPattern::new(p).unwrap();
        let for_bank = root
            .bless(
                &pk,
                "bank-only",
                vec![Caveat::PeerBlessings(vec![pattern("bank/...")])],
            )
            .unwrap();
        let expired = root.bless(&pk, "old", vec![Caveat::Expiry(1)]).unwrap();
        let adder = root
            .bless(&pk, "adder", vec![Caveat::Method(vec!["Add".into()])])
            .unwrap();
        for b in [for_bank, expired, adder] {
            me.add_blessing(b).unwrap();
        }
        let names = |peer: &[&str]| -> Vec<String> {
            let peer: Vec<String> = peer.iter().map(|s| s.to_string()).collect();
            me.blessings_for(&peer).iter().map(Blessing::name).collect()
        };
        assert_eq!(
            names(&["bank/teller"]),
            vec!["root/adder", "root/bank-only", "me"]
        );
        assert_eq!(names(&["shop"]), vec!["root/adder", "me"]);
        assert_eq!(names(&[]), vec!["root/adder", "me"]);
    }
}
