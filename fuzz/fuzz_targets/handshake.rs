//! The server's half of the session handshake, fed the input as all the client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspr::fuzzing::handshake(data));
