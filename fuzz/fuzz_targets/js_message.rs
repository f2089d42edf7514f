//! A websocket message from JavaScript: the envelope and every typed `data`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspr::fuzzing::js_message(data));
