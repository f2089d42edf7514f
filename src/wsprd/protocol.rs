//! The websocket protocol of the contract (sections 3 to 6): envelopes,
//! message types, and the typed `data` of each request. Pure: parsing and
//! encoding only; `pipe` and `controller` act on the results.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::signature::{MethodSignature, Signature};

/// Message types JavaScript sends (contract section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InType {
    /// 0: call a method.
    Call,
    /// 1: serve a server under a name.
    Serve,
    /// 2: the reply to a ServerRequest.
    ServerResponse,
    /// 3: a stream item.
    StreamValue,
    /// 4: the end of a stream.
    StreamClose,
    /// 5: the signature of a name.
    Signature,
    /// 6: stop a server.
    StopServer,
    /// 8: bless an identity.
    BlessIdentity,
    /// 9: forget an identity.
    UnlinkIdentity,
    /// 10: create an identity.
    CreateIdentity,
    /// 11: the reply to a DispatcherLookup.
    LookupResponse,
    /// 12: the reply to an AuthRequest.
    AuthResponse,
    /// 13: a name space operation.
    Namespace,
    /// 17: cancel a call.
    Cancel,
    /// 19: stop serving a server under one of its names (an extension of
    /// the contract; docs/protocol.md).
    RemoveName,
    /// 20: the user's token, first on the pipe, or renewed later (an
    /// extension of the contract; docs/protocol.md).
    Token,
}

impl InType {
    /// The type for a number, if it is one.
    pub fn from_number(n: u64) -> Option<InType> {
        Some(match n {
            0 => InType::Call,
            1 => InType::Serve,
            2 => InType::ServerResponse,
            3 => InType::StreamValue,
            4 => InType::StreamClose,
            5 => InType::Signature,
            6 => InType::StopServer,
            8 => InType::BlessIdentity,
            9 => InType::UnlinkIdentity,
            10 => InType::CreateIdentity,
            11 => InType::LookupResponse,
            12 => InType::AuthResponse,
            13 => InType::Namespace,
            17 => InType::Cancel,
            19 => InType::RemoveName,
            20 => InType::Token,
            _ => return None,
        })
    }

    /// Whether this type starts a flow of JavaScript's (odd, unused ids).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            InType::Call
                | InType::Serve
                | InType::Signature
                | InType::StopServer
                | InType::RemoveName
                | InType::BlessIdentity
                | InType::UnlinkIdentity
                | InType::CreateIdentity
                | InType::Namespace
        )
    }
}

/// Message types the daemon sends (contract section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OutType {
    /// 0: the last message of a successful flow.
    Final = 0,
    /// 1: a stream item.
    Stream = 1,
    /// 2: the last message of a failed flow.
    Error = 2,
    /// 3: an incoming RPC for a JavaScript object.
    ServerRequest = 3,
    /// 4: the end of a stream.
    StreamClose = 4,
    /// 5: which object serves (suffix, method)?
    DispatcherLookup = 5,
    /// 6: may this caller call?
    AuthRequest = 6,
    /// 7: the caller of a ServerRequest went away.
    Cancel = 7,
}

/// The `data` of a message, as JSON text: decoded by [`data`] into the
/// type its message needs (not into a [`Value`] tree first).
pub type Data = Option<Box<RawValue>>;

/// A parsed envelope from JavaScript.
#[derive(Debug)]
pub struct Incoming {
    /// The flow id.
    pub id: u64,
    /// The type.
    pub kind: InType,
    /// The data, if present and not null.
    pub data: Data,
}

/// Parses one text frame. On failure, the id to answer on (0 when the
/// frame has none) and a `BadProtocol` error.
pub fn parse_envelope(text: &str) -> Result<Incoming, (u64, Error)> {
    // A well-formed envelope is read in one pass, its data kept as text.
    #[derive(Deserialize)]
    struct Envelope<'a> {
        id: u64,
        #[serde(rename = "type")]
        kind: u64,
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
    }
    // (Only an object: serde would take an array as the fields in order.)
    if text.trim_start().starts_with('{')
        && let Ok(e) = serde_json::from_str::<Envelope>(text)
        && let Some(kind) = InType::from_number(e.kind)
    {
        return Ok(Incoming {
            id: e.id,
            kind,
            data: e.data.map(RawValue::to_owned),
        });
    }
    // Anything else goes the long way, which says what is wrong with it.
    parse_envelope_slowly(text)
}

fn parse_envelope_slowly(text: &str) -> Result<Incoming, (u64, Error)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            0,
            Error::bad_protocol(format!("the frame is not JSON: {e}")),
        )
    })?;
    let Value::Object(mut map) = value else {
        return Err((0, Error::bad_protocol("the frame is not a JSON object")));
    };
    let id = match map.get("id") {
        Some(v) => v.as_u64().ok_or_else(|| {
            (
                0,
                Error::bad_protocol(format!("id {v} is not an unsigned integer")),
            )
        })?,
        None => return Err((0, Error::bad_protocol("the frame has no id"))),
    };
    let kind = match map.get("type") {
        Some(v) => match v.as_u64().and_then(InType::from_number) {
            Some(k) => k,
            None => return Err((id, Error::bad_protocol(format!("unknown message type {v}")))),
        },
        None => return Err((id, Error::bad_protocol("the frame has no type"))),
    };
    let data = match map.remove("data").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(
            serde_json::value::to_raw_value(&v)
                .map_err(|e| (id, Error::bad_protocol(format!("bad data: {e}"))))?,
        ),
    };
    Ok(Incoming { id, kind, data })
}

/// A stream item's data as the JSON text JavaScript wrote, checked but not
/// decoded into a tree: `null` when there is none, or when it is not JSON
/// every peer can read (a number out of range, as [`value`] has it too).
pub fn raw_item(data: Data) -> Box<RawValue> {
    match data {
        Some(raw) if serde_json::from_str::<Readable>(raw.get()).is_ok() => raw,
        // "null" is JSON.
        _ => RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!()),
    }
}

/// JSON that reads as a [`Value`], checked without building one (numbers
/// parsed, strings and nesting walked, nothing kept).
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Readable, D::Error> {
        d.deserialize_any(ReadableVisitor)
    }
}

struct ReadableVisitor;

impl<'de> serde::de::Visitor<'de> for ReadableVisitor {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Readable, E> {
        if v.is_finite() {
            Ok(Readable)
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, Readable>()?
            .is_some()
        {}
        Ok(Readable)
    }
}

/// Decodes `data` into `T`; a missing or mistyped field is `BadArg`.
pub fn data<T: serde::de::DeserializeOwned>(data: Data, what: &str) -> Result<T, Error> {
    if let Some(raw) = &data
        && let Ok(t) = serde_json::from_str(raw.get())
    {
        return Ok(t);
    }
    // Decoding failed (or there is no data): again, through a Value, for
    // an error that names the field and no position in the text.
    let value = value(data);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::bad_arg(format!("bad {what} data: {}", e.inner()))
        } else {
            Error::bad_arg(format!("bad {what} data: {path}: {}", e.inner()))
        }
    })
}

/// `data` as a [`Value`] (null when absent).
pub fn value(data: Data) -> Value {
    data.and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null)
}

/// `data` for tests and tools: `v` as JSON text.
#[cfg(any(test, feature = "testing"))]
pub fn raw(v: &Value) -> Data {
    serde_json::value::to_raw_value(v).ok()
}

/// Encodes an outgoing envelope as JSON text.
pub fn envelope(id: u64, kind: OutType, message: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a, M: Serialize> {
        id: u64,
        #[serde(rename = "type")]
        kind: u8,
        message: &'a M,
    }
    // Serializing plain data into a Vec cannot fail.
    serde_json::to_vec(&Out {
        id,
        kind: kind as u8,
        message,
    })
    .unwrap_or_default()
}

/// `data` of a call (0).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRequest {
    /// The name to call.
    pub name: String,
    /// The method, lowerCamelCase.
    pub method: String,
    /// The arguments.
    #[serde(default)]
    pub in_args: Vec<Value>,
    /// Results plus the error slot (informational: decoded, so that a
    /// malformed one is refused, and not used).
    #[serde(default)]
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub num_out_args: Option<u32>,
    /// Whether the method streams.
    #[serde(default)]
    pub is_streaming: bool,
    /// Milliseconds; absent or 0: no deadline.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Blessing patterns the server must prove a name matching (an
    /// extension of the contract; see docs/security.md).
    #[serde(default)]
    pub server_blessings: Vec<String>,
}

/// `data` of serve (1).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServeRequest {
    /// The name to mount the server under.
    pub name: String,
    /// JavaScript's number for the server.
    pub server_id: u64,
}

/// `data` of removeName (19): a name of one of this pipe's servers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveNameRequest {
    /// The name to unmount the server from.
    pub name: String,
    /// JavaScript's number for the server.
    pub server_id: u64,
}

/// `data` of serverResponse (2).
#[derive(Debug, Deserialize)]
pub struct ServerResponse {
    /// The results.
    #[serde(default)]
    pub results: Vec<Value>,
    /// An error value, or null.
    #[serde(default)]
    pub err: Option<Value>,
}

/// `data` of signature (5).
#[derive(Debug, Deserialize)]
pub struct SignatureRequest {
    /// The name.
    pub name: String,
}

/// `data` of lookupResponse (11).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupResponse {
    /// The JavaScript object; negative: no such object.
    #[serde(default)]
    pub handle: Option<i64>,
    /// Whether JavaScript authorizes calls itself.
    #[serde(default)]
    pub has_authorizer: bool,
    /// The object's signature, lowerCamelCase.
    #[serde(default)]
    pub signature: Option<Signature>,
    /// An error value, or null.
    #[serde(default)]
    pub err: Option<Value>,
    /// Whether the reply may be reused for the same suffix and method.
    #[serde(default)]
    pub cacheable: bool,
}

/// `data` of authResponse (12).
#[derive(Debug, Deserialize)]
pub struct AuthResponse {
    /// An error value, or null to allow.
    #[serde(default)]
    pub err: Option<Value>,
}

/// `data` of namespace (13).
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum NamespaceRequest {
    /// Names matching a pattern.
    Glob {
        /// The pattern.
        pattern: String,
    },
    /// Mount a server under a name.
    Mount {
        /// The name.
        name: String,
        /// The server's rooted name or endpoint.
        server: String,
        /// Seconds (default 60).
        #[serde(default)]
        ttl: Option<f64>,
        /// The blessing names (or patterns) the server proves, recorded
        /// for it (default: the pipe's own names). An extension.
        #[serde(default, rename = "serverBlessings")]
        server_blessings: Vec<String>,
    },
    /// Unmount a server from a name.
    Unmount {
        /// The name.
        name: String,
        /// The server (empty: all).
        #[serde(default)]
        server: String,
    },
    /// What a name resolves to.
    Resolve {
        /// The name.
        name: String,
    },
    /// The permissions of a name, and their version. An extension.
    GetPermissions {
        /// The name.
        name: String,
    },
    /// Sets the permissions of a name. An extension.
    SetPermissions {
        /// The name.
        name: String,
        /// An access list per tag (`{"Admin": ["pattern", ..], ..}`).
        permissions: crate::security::access::Permissions,
        /// The version read with getPermissions (absent: any).
        #[serde(default)]
        version: String,
    },
    /// Deletes a name (and, with `deleteSubtree`, the names below it). An
    /// extension.
    Delete {
        /// The name.
        name: String,
        /// Also delete the names below it.
        #[serde(default, rename = "deleteSubtree")]
        delete_subtree: bool,
    },
}

/// An error value from JavaScript (`err`), if it says there is one. A
/// value with no id keeps `default_id`.
pub fn js_error(err: &Option<Value>, default_id: &str) -> Option<Error> {
    let v = err.as_ref().filter(|v| !v.is_null())?;
    let has_id = v.as_object().is_some_and(|m| {
        m.get("id")
            .or_else(|| m.get("iD"))
            .is_some_and(|i| i.is_string())
    });
    let e = Error::from_json(v).unwrap_or_else(|| Error::unknown(v.to_string()));
    Some(if has_id {
        e
    } else {
        Error::new(default_id, e.msg())
    })
}

/// A signature with its method names' first letters changed by `f`.
pub fn rename_methods(sig: &Signature, f: fn(&str) -> String) -> Signature {
    sig.iter()
        .map(|(k, v)| (f(k), v.clone()))
        .collect::<std::collections::BTreeMap<String, MethodSignature>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ids;
    use serde_json::json;

    #[test]
    fn envelopes() {
        let m = parse_envelope(r#"{"id": 3, "type": 0, "data": {"name": "a"}}"#).unwrap();
        assert_eq!((m.id, m.kind), (3, InType::Call));
        assert!(m.data.is_some());
        let m = parse_envelope(r#"{"id": 4, "type": 4}"#).unwrap();
        assert!(m.data.is_none());
        // Null data is no data; unknown fields are ignored; of repeated
        // fields the last counts (the one-pass reader refuses those and
        // the long way takes them).
        let m = parse_envelope(r#"{"id": 4, "type": 4, "data": null, "x": [1]}"#).unwrap();
        assert!(m.data.is_none());
        let m = parse_envelope(r#"{"id": 3, "type": 3, "id": 7, "data": {"a": "é"}}"#).unwrap();
        assert_eq!((m.id, m.kind), (7, InType::StreamValue));
        assert_eq!(value(m.data), json!({"a": "é"}));
        for (text, id) in [
            ("nope", 0),
            ("[1]", 0),
            ("[1, 2, 3]", 0),
            (r#"{"type": 0}"#, 0),
            (r#"{"id": -1, "type": 0}"#, 0),
            (r#"{"id": 5, "type": 99}"#, 5),
            (r#"{"id": 5, "type": "0"}"#, 5),
            (r#"{"id": 5}"#, 5),
        ] {
            let (got, e) = parse_envelope(text).unwrap_err();
            assert_eq!(got, id, "{text}");
            assert_eq!(e.id(), ids::BAD_PROTOCOL, "{text}");
        }
    }

    #[test]
    fn typed_data() {
        let c: CallRequest = data(
            raw(&json!({"name": "a", "method": "add", "inArgs": [1, 2], "numOutArgs": 2, "timeout": 50})),
            "call",
        )
        .unwrap();
        assert_eq!(c.in_args.len(), 2);
        assert_eq!(c.timeout, Some(50.0));
        let e = data::<CallRequest>(raw(&json!({"method": "add"})), "call").unwrap_err();
        assert_eq!(e.id(), ids::BAD_ARG);
        assert!(e.msg().contains("name"), "{e}");
        // Errors name the field, not a position in the text.
        let e = data::<CallRequest>(raw(&json!({"name": "a", "method": 7})), "call").unwrap_err();
        assert_eq!(
            e.msg(),
            "bad call data: method: invalid type: integer `7`, expected a string"
        );
        let e = data::<CallRequest>(None, "call").unwrap_err();
        assert_eq!(e.id(), ids::BAD_ARG);
        let e = data::<ServeRequest>(raw(&json!({"name": 1, "serverId": 1})), "serve").unwrap_err();
        assert_eq!(e.id(), ids::BAD_ARG);
        let n: NamespaceRequest =
            data(raw(&json!({"method": "glob", "pattern": "*"})), "namespace").unwrap();
        assert!(matches!(n, NamespaceRequest::Glob { .. }));
        assert!(data::<NamespaceRequest>(raw(&json!({"method": "dance"})), "namespace").is_err());
    }

    #[test]
    fn js_errors_keep_their_ids() {
        let e = js_error(&Some(json!({"id": "app.Err", "msg": "x"})), ids::NO_ACCESS).unwrap();
        assert_eq!(e.id(), "app.Err");
        let e = js_error(&Some(json!({"message": "no"})), ids::NO_ACCESS).unwrap();
        assert_eq!(e.id(), ids::NO_ACCESS);
        assert_eq!(e.msg(), "no");
        assert!(js_error(&Some(Value::Null), ids::NO_ACCESS).is_none());
        assert!(js_error(&None, ids::NO_ACCESS).is_none());
    }

    #[test]
    fn out_envelope() {
        let b = envelope(7, OutType::Final, &json!([5]));
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"id":7,"type":0,"message":[5]}"#
        );
    }
}

#[cfg(test)]
mod raw_item_tests {
    use super::*;

    #[test]
    fn items_are_kept_as_written_unless_unreadable() {
        let raw = |t: &str| Some(RawValue::from_string(t.to_string()).unwrap());
        assert_eq!(
            raw_item(raw(r#"[0, 0, {"a": "\u00e9"}]"#)).get(),
            r#"[0, 0, {"a": "\u00e9"}]"#
        );
        assert_eq!(raw_item(raw("1e400")).get(), "null");
        assert_eq!(raw_item(raw("[1, -1e999]")).get(), "null");
        assert_eq!(raw_item(None).get(), "null");
        assert_eq!(value(raw("1e400")), Value::Null, "as before");
    }
}
