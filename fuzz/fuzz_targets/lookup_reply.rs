//! The data of a lookupResponse, with the signature in it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspr::fuzzing::lookup_reply(data));
