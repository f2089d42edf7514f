//! Names, endpoint strings and glob patterns (src/naming.rs, src/glob.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspr::fuzzing::names(data));
