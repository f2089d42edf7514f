//! What a server object's methods are: names, arguments, results and
//! whether they stream. The RPC runtime answers the predefined `Signature`
//! method with it, and the daemon hands it between JavaScript and the
//! runtime; it is plain data, so both stand on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One method's signature. `num_out_args` counts the results plus the
/// trailing error slot (a method returning one value has 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodSignature {
    /// Names of the arguments.
    pub in_args: Vec<String>,
    /// Results plus the error slot.
    pub num_out_args: u32,
    /// Whether the method streams (either way).
    #[serde(default)]
    pub is_streaming: bool,
}

/// A service signature: method name to signature.
pub type Signature = BTreeMap<String, MethodSignature>;
