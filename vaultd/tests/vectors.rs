//! Known-answer vectors for record formats v1 and v2 (`testdata/`, described in
//! `docs/record-format.md`). `record-v1.json`, `record-v2.json` and `transit-v1.json` must seal to exactly the
//! stored bytes and open back; every `fail_*.json` must fail to open.
//!
//! Regenerate (only when the format version changes):
//! `cargo test -p vaultd --test vectors -- --ignored write_vectors`

use std::path::PathBuf;

use serde_json::{Value, json};
use vault_client::wire::Binding;
use vaultd::record::{self, Header, RecordSlot};
use vaultd::secret::{DataKey, KeyBytes};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("hex")
}

fn dek(v: &Value) -> DataKey {
    vaultd::secret::dangerous_data_key(
        KeyBytes::from_slice(&unhex(s(v, "dek"))).expect("32-byte dek"),
    )
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("field {field}"))
}

fn binding(v: &Value) -> Binding {
    serde_json::from_value(v["binding"].clone()).expect("binding")
}

fn header(v: &Value) -> Header {
    let h = &v["header"];
    Header {
        key_version: u32::try_from(h["key_version"].as_u64().expect("key_version")).expect("u32"),
        revision: h["revision"].as_u64().expect("revision"),
        expires_at: h["expires_at"].as_i64(),
        updated_at: h["updated_at"].as_i64().expect("updated_at"),
    }
}

fn slot(v: &Value) -> RecordSlot<'_> {
    RecordSlot {
        vault_id: s(v, "vault_id"),
        tenant: s(v, "tenant"),
        token: s(v, "token"),
    }
}

fn array<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    unhex(s(v, field)).try_into().expect("fixed length")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(testdata().join(name)).expect("vector file");
    serde_json::from_str(&text).expect("vector json")
}

/// A vector's format (`format`, 1 or 2) and whether it is a decoy (`decoy`, v2 only).
fn format(v: &Value) -> (record::Format, bool) {
    let decoy = v["decoy"].as_bool().unwrap_or(false);
    match v["format"].as_u64() {
        Some(1) => (record::Format::V1, decoy),
        Some(2) => (record::Format::V2, decoy),
        other => panic!("vector format {other:?}"),
    }
}

#[test]
fn record_vectors_seal_and_open_exactly() {
    for file in ["record-v1.json", "record-v2.json"] {
        let vectors = load(file);
        let vectors = vectors.as_array().expect("list");
        assert!(vectors.len() >= 3, "{file}");
        for v in vectors {
            let (format, decoy) = format(v);
            let (binding, secret) = (binding(v), unhex(s(v, "secret")));
            let contents = record::Contents {
                binding: &binding,
                secret: &secret,
                decoy,
            };
            let sealed = record::dangerous_seal_record_with(
                format,
                &dek(v),
                slot(v),
                header(v),
                contents,
                &array(v, "salt"),
                &array(v, "nonce"),
            );
            assert_eq!(
                hex::encode(&sealed),
                s(v, "record"),
                "{file}: {}",
                s(v, "description")
            );
            let opened =
                record::open_record(&dek(v), slot(v), &unhex(s(v, "record"))).expect("opens");
            assert_eq!(opened.header, header(v));
            assert_eq!(opened.binding, binding);
            assert_eq!(hex::encode(opened.secret.expose_secret()), s(v, "secret"));
            assert_eq!(opened.decoy, decoy);
        }
    }
}

#[test]
fn transit_vectors_seal_and_open_exactly() {
    let vectors = load("transit-v1.json");
    for v in vectors.as_array().expect("list") {
        let version = u32::try_from(v["key_version"].as_u64().expect("version")).expect("u32");
        let blob = record::dangerous_seal_transit_with(
            &dek(v),
            s(v, "vault_id"),
            s(v, "tenant"),
            version,
            s(v, "context"),
            &unhex(s(v, "plaintext")),
            &array(v, "salt"),
            &array(v, "nonce"),
        );
        assert_eq!(blob, s(v, "sealed"));
        let (parsed, raw) = record::parse_transit(&blob).expect("parses");
        let back = record::open_transit(
            &dek(v),
            s(v, "vault_id"),
            s(v, "tenant"),
            parsed,
            s(v, "context"),
            &raw,
        )
        .expect("opens");
        assert_eq!(hex::encode(back.expose_secret()), s(v, "plaintext"));
    }
}

/// Opens a `fail_*` vector the way the vault would; `Ok` means it wrongly succeeded, `Err` names
/// the failure as the vector's `error` field does: `malformed`, `decryption_failed` or
/// `binding_mismatch`.
fn try_fail_vector(v: &Value) -> Result<(), &'static str> {
    let named = |e: record::RecordError| match e {
        record::RecordError::Malformed(_) => "malformed",
        record::RecordError::DecryptionFailed => "decryption_failed",
    };
    match s(v, "kind") {
        "record" => {
            let token =
                record::open_record(&dek(v), slot(v), &unhex(s(v, "record"))).map_err(named)?;
            let expect_account = v["expect"]["account"].as_str();
            if !record::field_matches(expect_account, &token.binding.account) {
                return Err("binding_mismatch");
            }
            Ok(())
        }
        "transit" => {
            let (version, raw) = record::parse_transit(s(v, "sealed")).map_err(named)?;
            record::open_transit(
                &dek(v),
                s(v, "vault_id"),
                s(v, "tenant"),
                version,
                s(v, "context"),
                &raw,
            )
            .map(drop)
            .map_err(named)
        }
        other => panic!("unknown vector kind {other}"),
    }
}

#[test]
fn fail_vectors_all_fail() {
    let mut names: Vec<_> = std::fs::read_dir(testdata())
        .expect("testdata")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with("fail_") && n.ends_with(".json"))
        .collect();
    names.sort();
    for required in [
        "bit_flipped",
        "truncated",
        "other_tenant",
        "other_token",
        "other_account",
        "other_key_version",
        "unknown_format",
    ] {
        assert!(
            names.contains(&format!("fail_{required}.json")),
            "missing fail_{required}.json"
        );
    }
    for name in names {
        let v = load(&name);
        assert_eq!(
            try_fail_vector(&v),
            Err(s(&v, "error")),
            "{name} must fail with the error it names"
        );
    }
}

#[test]
#[ignore = "writes testdata/; run by hand when the format changes"]
fn write_vectors() {
    let base = json!({
        "vault_id": "0123456789abcdef0123456789abcdef",
        "dek": hex::encode([0x42; 32]),
    });
    let cases = [
        (
            "utf-8 token, no expiry",
            "acme",
            "consent-1",
            "access-token-abc",
            1u32,
            1u64,
            None,
            "DE89370400440532013000",
            false,
        ),
        (
            "binary token with expiry",
            "acme",
            "consent-2",
            "\u{0}\u{1}\u{2}\u{ff}",
            2,
            7,
            Some(1_800_000_000i64),
            "FR7630006000011234567890189",
            false,
        ),
        (
            "refresh token, long id",
            "globex.eu",
            "refresh-2026-11-23_x",
            "rt.eyJhbGciOiJIUzI1NiJ9",
            3,
            42,
            Some(1_900_000_000),
            "GB33BUKB20201555555555",
            false,
        ),
        (
            "a decoy",
            "acme",
            "consent-7",
            "access-token-xyz",
            1,
            1,
            None,
            "DE44500105175407324931",
            true,
        ),
    ];
    let mut by_format: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for (f, (format, number)) in [(record::Format::V1, 1), (record::Format::V2, 2)]
        .into_iter()
        .enumerate()
    {
        for (i, (desc, tenant, token, secret, version, revision, expires, account, decoy)) in
            cases.into_iter().enumerate()
        {
            if decoy && format == record::Format::V1 {
                continue;
            }
            let salt = [u8::try_from(i + 4 * f).expect("small") + 1; 32];
            let nonce = [u8::try_from(i + 4 * f).expect("small") + 0x10; 12];
            let mut v = base.clone();
            v["description"] = json!(desc);
            v["format"] = json!(number);
            if format == record::Format::V2 {
                v["decoy"] = json!(decoy);
            }
            v["tenant"] = json!(tenant);
            v["token"] = json!(token);
            v["header"] = json!({"key_version": version, "revision": revision, "expires_at": expires, "updated_at": 1_795_453_200});
            v["binding"] = json!({"subject": "user-42", "bank": "example-bank", "account": account, "scope": "accounts"});
            v["secret"] = json!(hex::encode(secret.as_bytes()));
            v["salt"] = json!(hex::encode(salt));
            v["nonce"] = json!(hex::encode(nonce));
            let b = binding(&v);
            let contents = record::Contents {
                binding: &b,
                secret: secret.as_bytes(),
                decoy,
            };
            let sealed = record::dangerous_seal_record_with(
                format,
                &dek(&v),
                slot(&v),
                header(&v),
                contents,
                &salt,
                &nonce,
            );
            v["record"] = json!(hex::encode(&sealed));
            by_format[f].push(v);
        }
    }
    let [records, records_v2] = by_format;
    let mut transit = base.clone();
    transit["description"] = json!("transit blob bound to a context");
    transit["tenant"] = json!("acme");
    transit["key_version"] = json!(3);
    transit["context"] = json!("invoice:2026-0042");
    transit["plaintext"] = json!(hex::encode(b"IBAN DE89 3704 0044 0532 0130 00"));
    transit["salt"] = json!(hex::encode([0x07; 32]));
    transit["nonce"] = json!(hex::encode([0x08; 12]));
    transit["sealed"] = json!(record::dangerous_seal_transit_with(
        &dek(&transit),
        "0123456789abcdef0123456789abcdef",
        "acme",
        3,
        "invoice:2026-0042",
        b"IBAN DE89 3704 0044 0532 0130 00",
        &[0x07; 32],
        &[0x08; 12],
    ));
    let write = |name: &str, v: &Value| {
        std::fs::write(
            testdata().join(name),
            serde_json::to_string_pretty(v).expect("json") + "\n",
        )
        .expect("write");
    };
    write("record-v1.json", &json!(records));
    write("record-v2.json", &json!(records_v2));
    write("transit-v1.json", &json!([transit.clone()]));

    let good = &records[0];
    let fail = |desc: &str, error: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        v["kind"] = json!("record");
        v["description"] = json!(desc);
        v["error"] = json!(error);
        edit(&mut v);
        v
    };
    let record_bytes = unhex(s(good, "record"));
    let flipped = {
        let mut b = record_bytes.clone();
        b[80] ^= 0x01;
        hex::encode(&b)
    };
    let truncated = hex::encode(&record_bytes[..record_bytes.len() - 1]);
    let other_version = {
        let mut b = record_bytes.clone();
        b[4] = 2; // key_version 1 -> 2 in the clear header
        hex::encode(&b)
    };
    let unknown_format = {
        let mut b = record_bytes.clone();
        b[0] = 3; // format 1 -> 3, which does not exist
        hex::encode(&b)
    };
    write(
        "fail_bit_flipped.json",
        &fail("one ciphertext bit flipped", "decryption_failed", &|v| {
            v["record"] = json!(flipped)
        }),
    );
    write(
        "fail_truncated.json",
        &fail("last tag byte cut off", "decryption_failed", &|v| {
            v["record"] = json!(truncated)
        }),
    );
    write(
        "fail_other_tenant.json",
        &fail(
            "record moved to another tenant",
            "decryption_failed",
            &|v| v["tenant"] = json!("globex"),
        ),
    );
    write(
        "fail_other_token.json",
        &fail(
            "record moved to another token id",
            "decryption_failed",
            &|v| v["token"] = json!("consent-9"),
        ),
    );
    write(
        "fail_other_account.json",
        &fail(
            "record presented for another account",
            "binding_mismatch",
            &|v| v["expect"] = json!({"account": "DE02120300000000202051"}),
        ),
    );
    write(
        "fail_other_key_version.json",
        &fail(
            "header relabelled to key version 2",
            "decryption_failed",
            &|v| v["record"] = json!(other_version),
        ),
    );
    write(
        "fail_unknown_format.json",
        &fail(
            "format version 2, which does not exist",
            "malformed",
            &|v| v["record"] = json!(unknown_format),
        ),
    );
    let mut t = transit;
    t["kind"] = json!("transit");
    t["error"] = json!("decryption_failed");
    t["description"] = json!("transit blob opened with another context");
    t["context"] = json!("invoice:2026-0043");
    write("fail_transit_other_context.json", &t);
}
