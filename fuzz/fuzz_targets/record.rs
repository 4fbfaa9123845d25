#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vaultd::fuzz::stored_record(data));
