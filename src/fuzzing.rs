//! Entry points for the fuzz targets in `fuzz/`: each takes arbitrary
//! bytes and runs one decoder or state machine of the crate on them. None
//! may panic, whatever the input; the targets check exactly that.

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use crate::glob::Pattern;
use crate::naming::{Endpoint, Name};
use crate::rpc::wire;
use crate::security::{Blessing, Principal};
#[cfg(feature = "daemon")]
use crate::wsprd::protocol;

/// An RPC frame: length prefix, then body.
pub fn rpc_frame(data: &[u8]) {
    if data.len() >= 4 {
        let prefix = [data[0], data[1], data[2], data[3]];
        let _ = wire::frame_len(prefix, wire::DEFAULT_MAX_FRAME);
    }
    let _ = wire::decode(data);
    if let Ok(h) = <&[u8; wire::HELLO_LEN]>::try_from(data.get(..wire::HELLO_LEN).unwrap_or(&[])) {
        let _ = wire::decode_hello(h);
    }
}

/// Names, endpoints and glob patterns.
pub fn names(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let _ = Endpoint::parse(&s);
    if let Ok(n) = Name::parse(&s) {
        let _ = n.is_terminal();
    }
    let (a, b) = s.split_at(s.floor_char_boundary(s.len() / 2));
    let _ = crate::naming::join(a, b);
    let _ = crate::naming::split_first(&s);
    if let Ok(p) = Pattern::parse(a) {
        let st = p.walk(b);
        let _ = p.is_final(&st);
        let _ = p.remainders(&st);
    }
}

/// A websocket message from JavaScript: the envelope and every typed
/// `data` the daemon decodes.
#[cfg(feature = "daemon")]
pub fn js_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(m) = protocol::parse_envelope(&text) else {
        return;
    };
    let d = m.data;
    let _ = protocol::data::<protocol::CallRequest>(d.clone(), "call");
    let _ = protocol::data::<protocol::ServeRequest>(d.clone(), "serve");
    let _ = protocol::data::<protocol::ServerResponse>(d.clone(), "serverResponse");
    let _ = protocol::data::<protocol::SignatureRequest>(d.clone(), "signature");
    let _ = protocol::data::<protocol::AuthResponse>(d.clone(), "authResponse");
    let _ = protocol::data::<protocol::NamespaceRequest>(d.clone(), "namespace");
    let _ = protocol::data::<crate::wsprd::identity::BlessRequest>(d.clone(), "blessIdentity");
    lookup_reply_value(d);
}

/// A lookupResponse's data, and the signature in it.
#[cfg(feature = "daemon")]
pub fn lookup_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    lookup_reply_value(serde_json::from_str(&text).ok());
}

#[cfg(feature = "daemon")]
fn lookup_reply_value(d: protocol::Data) {
    if let Ok(r) = protocol::data::<protocol::LookupResponse>(d, "lookupResponse") {
        let _ = protocol::js_error(&r.err, crate::error::ids::UNKNOWN);
        if let Some(sig) = r.signature {
            let _ = protocol::rename_methods(&sig, crate::naming::upper_first);
        }
    }
}

/// A blessing in its binary form, and a peer's proof of identity.
pub fn blessing(data: &[u8]) {
    if let Ok((b, _)) = Blessing::decode(data) {
        let _ = b.verify();
        let _ = b.name();
    }
    let _ = crate::security::session::check_proof(data, b"client", &[0u8; 32]);
}

/// The server's half of the session handshake, fed `data` as everything
/// the client sends.
pub fn handshake(data: &[u8]) {
    static PRINCIPAL: OnceLock<Principal> = OnceLock::new();
    let p = PRINCIPAL.get_or_init(|| Principal::new_self_blessed("fuzz").expect("a key"));
    let mut s = Scripted { input: data };
    let _ = crate::security::session::server_handshake(&mut s, p, b"");
}

/// A stream that reads a script and discards what is written.
struct Scripted<'a> {
    input: &'a [u8],
}

impl Read for Scripted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_take_garbage() {
        let samples: [&[u8]; 5] = [
            b"",
            b"\x00\x00\x00\x09\x01",
            b"{\"id\":1,\"type\":0,\"data\":{}}",
            &[0xff; 64],
            b"/@w1@a:1@zz@m@@/x",
        ];
        for s in samples {
            super::rpc_frame(s);
            super::names(s);
            #[cfg(feature = "daemon")]
            {
                super::js_message(s);
                super::lookup_reply(s);
            }
            super::blessing(s);
            super::handshake(s);
        }
    }
}
