//! Micro benches of the cryptography on the request path (docs/performance.md):
//!
//! - `record_1k`: seal and open of a stored 1 KiB token (record format 2: HKDF per record,
//!   AES-256-GCM, associated data), next to raw AES-256-GCM of the same plaintext without HKDF
//!   or associated-data encoding, which is the floor the record format adds to;
//! - `transit_1k`: transit seal and open of 1 KiB (base64 blob included);
//! - `keys`: one tenant data key unwrap (and wrap) under the master key, and the HKDF per-record
//!   key derivation alone.
//!
//! `cargo bench --bench crypto` (add `-- --quick` for a fast pass). CI only compiles this.

use std::hint::black_box;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vault_client::wire::Binding;
use vaultd::keys::derive::{RECORD_KEY, record_key};
use vaultd::keys::wrap::{DekSlot, unwrap_dek, wrap_dek};
use vaultd::record::{
    Contents, Format, Header, RecordSlot, dangerous_seal_record_with, dangerous_seal_transit_with,
    open_record, open_transit, parse_transit, seal_record, seal_transit,
};
use vaultd::secret::{DataKey, KeyBytes, MasterKey, dangerous_data_key, dangerous_master_key};

/// The value size of every bench: a typical bank access or refresh token is 1–2 KiB.
const VALUE_SIZE: usize = 1024;

fn key(byte: u8) -> KeyBytes {
    KeyBytes::from_slice(&[byte; 32]).expect("32 bytes")
}

fn dek() -> DataKey {
    dangerous_data_key(key(0x0b))
}

fn token() -> Vec<u8> {
    (0..VALUE_SIZE).map(|i| b'a' + (i % 26) as u8).collect()
}

fn binding() -> Binding {
    Binding {
        subject: "user-42".into(),
        bank: "examplebank".into(),
        account: "DE89370400440532013000".into(),
        scope: "accounts".into(),
    }
}

const SLOT: RecordSlot<'static> = RecordSlot {
    vault_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    tenant: "acme",
    token: "consent-1",
};

const HEADER: Header = Header {
    key_version: 1,
    revision: 1,
    expires_at: None,
    updated_at: 1_795_000_000,
};

fn record(c: &mut Criterion) {
    let dek = dek();
    let token = token();
    let binding = binding();
    let contents = |binding, token| Contents {
        binding,
        secret: token,
        decoy: false,
    };
    let sealed = seal_record(&dek, SLOT, HEADER, contents(&binding, &token)).expect("rng");
    let mut group = c.benchmark_group("record_1k");
    group.throughput(Throughput::Bytes(VALUE_SIZE as u64));
    group.bench_function("seal_record", |b| {
        b.iter(|| {
            seal_record(
                &dek,
                SLOT,
                HEADER,
                contents(black_box(&binding), black_box(&token)),
            )
        })
    });
    group.bench_function("dangerous_seal_record_with (no RNG)", |b| {
        b.iter(|| {
            dangerous_seal_record_with(
                Format::V2,
                &dek,
                SLOT,
                HEADER,
                contents(black_box(&binding), black_box(&token)),
                &[7; 32],
                &[9; 12],
            )
        })
    });
    group.bench_function("open_record", |b| {
        b.iter(|| open_record(&dek, SLOT, black_box(&sealed)).expect("authentic"))
    });

    // The floor: AES-256-GCM of the same plaintext under a fixed key, built per call as
    // `keys/aead.rs` does, without HKDF, random salt or associated-data encoding.
    let raw_key = [0x0b; 32];
    let nonce = [9u8; 12];
    let raw_sealed = raw_seal(&raw_key, &nonce, &token);
    group.bench_function("raw aes-256-gcm seal", |b| {
        b.iter(|| raw_seal(&raw_key, &nonce, black_box(&token)))
    });
    group.bench_function("raw aes-256-gcm open", |b| {
        b.iter(|| {
            Aes256Gcm::new(&raw_key.into())
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: black_box(&raw_sealed),
                        aad: b"",
                    },
                )
                .expect("authentic")
        })
    });
    group.finish();
}

fn raw_seal(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key.into())
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad: b"",
            },
        )
        .expect("1 KiB is far below the AES-GCM limit")
}

fn transit(c: &mut Criterion) {
    let dek = dek();
    let plain = token();
    let context = "invoice-42";
    let blob = seal_transit(&dek, SLOT.vault_id, "acme", 1, context, &plain).expect("rng");
    let mut group = c.benchmark_group("transit_1k");
    group.throughput(Throughput::Bytes(VALUE_SIZE as u64));
    group.bench_function("seal_transit", |b| {
        b.iter(|| seal_transit(&dek, SLOT.vault_id, "acme", 1, context, black_box(&plain)))
    });
    group.bench_function("dangerous_seal_transit_with (no RNG)", |b| {
        b.iter(|| {
            dangerous_seal_transit_with(
                &dek,
                SLOT.vault_id,
                "acme",
                1,
                context,
                black_box(&plain),
                &[7; 32],
                &[9; 12],
            )
        })
    });
    group.bench_function("parse_transit + open_transit", |b| {
        b.iter(|| {
            let (version, raw) = parse_transit(black_box(&blob)).expect("well-formed");
            open_transit(&dek, SLOT.vault_id, "acme", version, context, &raw).expect("authentic")
        })
    });
    group.finish();
}

fn keys(c: &mut Criterion) {
    let mk: MasterKey = dangerous_master_key(key(0x4d));
    let slot = DekSlot {
        vault_id: SLOT.vault_id,
        tenant: "acme",
        dek_version: 1,
        mk_version: 1,
    };
    let wrapped = wrap_dek(&mk, &dek(), &slot).expect("rng");
    let mut group = c.benchmark_group("keys");
    group.bench_function("unwrap_dek", |b| {
        b.iter(|| unwrap_dek(&mk, black_box(&wrapped), &slot).expect("authentic"))
    });
    group.bench_function("wrap_dek", |b| {
        let dek = dek();
        b.iter(|| wrap_dek(&mk, black_box(&dek), &slot).expect("rng"))
    });
    let dek = dek();
    group.bench_function("hkdf record_key", |b| {
        b.iter(|| record_key(&dek, black_box(&[7; 32]), RECORD_KEY))
    });
    group.finish();
}

criterion_group!(benches, record, transit, keys);
criterion_main!(benches);
