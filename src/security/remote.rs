//! The identity a session proved for its peer.

use crate::security::Blessing;

/// Who is at the other end of a connection: the key its session proved,
/// and the blessings it presented for that key (each chain verified).
/// Which of their names count for a call is decided per call (see
/// [`Principal::proven_names`](crate::security::Principal::proven_names)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIdentity {
    public_key: [u8; 32],
    blessings: Vec<Blessing>,
}

impl RemoteIdentity {
    pub(crate) fn new(public_key: [u8; 32], blessings: Vec<Blessing>) -> RemoteIdentity {
        RemoteIdentity {
            public_key,
            blessings,
        }
    }

    /// The peer's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The blessings the peer presented (chains verified, caveats not yet
    /// checked, roots not yet recognized).
    pub fn blessings(&self) -> &[Blessing] {
        &self.blessings
    }

    /// The names the peer presented, proven or not: for messages only.
    pub fn claimed_names(&self) -> Vec<String> {
        self.blessings.iter().map(Blessing::name).collect()
    }
}
