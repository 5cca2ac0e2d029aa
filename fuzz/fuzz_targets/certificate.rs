#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recordctl::fuzz_entries::certificate(data));
