//! An RPC frame (docs/wire.md): the length prefix, the body of every kind, the hello.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspr::fuzzing::rpc_frame(data));
