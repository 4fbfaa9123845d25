//! End-to-end tests and benches for the vaultd workspace live in tests/ and benches/.
