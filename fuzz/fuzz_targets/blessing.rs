//! A blessing in its binary form, and a peer's proof of identity.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspr::fuzzing::blessing(data));
