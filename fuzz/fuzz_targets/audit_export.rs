#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vaultd::fuzz::audit_export(data));
