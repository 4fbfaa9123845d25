//! Fuzz entry points (`fuzz/`, `scripts/fuzz`; `docs/fuzzing.md`): every parser of bytes an
//! attacker can choose, each as a function of one byte slice that must never panic, hang or
//! allocate without bound. cargo-fuzz drives them with the feature `fuzzing`; the unit test
//! below replays every file of `fuzz/corpus/` through them on the stable toolchain, in CI.

use vault_client::audit::LogVerifier;

use crate::keys::wrap::{self, DekSlot};
use crate::record::{self, RecordSlot};
use crate::secret::{DataKey, KeyBytes, MasterKey};
use crate::store::Group;

/// A fuzz target: one input, which it must survive.
pub type Target = fn(&[u8]);

/// Every target by name: the directory of its corpus, and the function.
pub const TARGETS: &[(&str, Target)] = &[
    ("route", route),
    ("body", body),
    ("record", stored_record),
    ("transit", transit_blob),
    ("wrapped_key", wrapped_key),
    ("group", group),
    ("log_record", log_record),
    ("backup", backup),
    ("audit_export", audit_export),
    ("config", config),
];

/// A request line: the first byte picks the method, the rest is the path and query.
pub fn route(data: &[u8]) {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*text, None),
    };
    crate::server::fuzz_route(method, path, query);
}

/// A request body: the first byte picks the endpoint's body type, the rest is the JSON.
pub fn body(data: &[u8]) {
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    crate::server::fuzz_body(kind, json);
}

/// A stored token record, opened with a fixed data key.
pub fn stored_record(data: &[u8]) {
    let _ = record::peek_header(data);
    let slot = RecordSlot {
        vault_id: "vault",
        tenant: "acme",
        token: "t1",
    };
    let _ = record::open_record(&fixed_dek(), slot, data);
}

/// A transit blob (`vault:v{n}:…`), parsed and opened with a fixed data key.
pub fn transit_blob(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((version, raw)) = record::parse_transit(text) {
        let _ = record::open_transit(&fixed_dek(), "vault", "acme", version, "ctx", &raw);
    }
}

/// A wrapped data key, unwrapped under a fixed master key.
pub fn wrapped_key(data: &[u8]) {
    let slot = DekSlot {
        vault_id: "vault",
        tenant: "acme",
        dek_version: 1,
        mk_version: 1,
    };
    let master = MasterKey::new(KeyBytes::from_slice(&[7; 32]).expect("32 bytes"));
    let _ = wrap::unwrap_dek(&master, data, &slot);
}

/// A resolved group, as a log record's key-value payload and a backup frame hold it: whatever
/// decodes encodes back to the same bytes.
pub fn group(data: &[u8]) {
    if let Ok(group) = Group::decode(data) {
        let mut again = Vec::new();
        group.encode_into(&mut again);
        assert_eq!(again, data, "a decoded group encodes to other bytes");
    }
}

/// A write-ahead log audit record's payload.
pub fn log_record(data: &[u8]) {
    let _ = crate::store::wal::AuditRecord::decode(data);
}

/// A backup file, read whole.
pub fn backup(data: &[u8]) {
    let _ = crate::store::backup::read(&mut &data[..], |_| Ok(()));
}

/// An audit export, line by line, as `vault-cli audit verify --offline` reads it.
pub fn audit_export(data: &[u8]) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let mut verifier = LogVerifier::new(key);
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        verifier.line(line);
    }
    let _ = verifier.finish(None);
}

/// The config file's TOML (parsed only: checking it reads the files it names).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = toml::from_str::<crate::config::RawConfig>(text);
    }
}

fn fixed_dek() -> DataKey {
    DataKey::new(KeyBytes::from_slice(&[0x0b; 32]).expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed and every crash the fuzzers ever found, through its target: CI runs this on
    /// the stable toolchain, without fuzzing.
    #[test]
    fn every_corpus_file_replays_through_its_target() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut replayed = 0;
        for (name, target) in TARGETS {
            let dir = corpus.join(name);
            let files = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}: each target has seeds", dir.display()));
            for file in files {
                let path = file.expect("corpus entry").path();
                let data = std::fs::read(&path).expect("corpus file");
                target(&data);
                replayed += 1;
            }
        }
        assert!(replayed >= TARGETS.len(), "{replayed} corpus files");
    }

    /// Writes the seed corpora from the real encoders (`cargo test -p vaultd --lib
    /// write_seed_corpora -- --ignored`); the seeds are committed.
    #[test]
    #[ignore = "writes fuzz/corpus: run by hand when a format changes"]
    fn write_seed_corpora() {
        use vault_client::wire::Binding;
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let write = |target: &str, name: &str, data: &[u8]| {
            let dir = corpus.join(target);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            std::fs::write(dir.join(name), data).expect("seed");
        };
        let binding = Binding {
            subject: "user-42".into(),
            bank: "bank".into(),
            account: "DE89".into(),
            scope: "accounts".into(),
        };
        let header = record::Header {
            key_version: 1,
            revision: 3,
            expires_at: Some(1_900_000_000),
            updated_at: 1_800_000_000,
        };
        let slot = RecordSlot {
            vault_id: "vault",
            tenant: "acme",
            token: "t1",
        };
        let contents = record::Contents {
            binding: &binding,
            secret: b"token",
            decoy: false,
        };
        let sealed = record::seal_record(&fixed_dek(), slot, header, contents).expect("seal");
        write("record", "sealed", &sealed);
        let blob =
            record::seal_transit(&fixed_dek(), "vault", "acme", 1, "ctx", b"plain").expect("seal");
        write("transit", "sealed", blob.as_bytes());
        let master = MasterKey::new(KeyBytes::from_slice(&[7; 32]).expect("32 bytes"));
        let dslot = DekSlot {
            vault_id: "vault",
            tenant: "acme",
            dek_version: 1,
            mk_version: 1,
        };
        write(
            "wrapped_key",
            "wrapped",
            &wrap::wrap_dek(&master, &fixed_dek(), &dslot).expect("wrap"),
        );
        let group = Group {
            position: 7,
            writes: vec![
                (b"t/acme".to_vec(), Some(b"{}".to_vec())),
                (b"r/acme/x".to_vec(), None),
            ],
        };
        let mut bytes = Vec::new();
        group.encode_into(&mut bytes);
        write("group", "two-writes", &bytes);
        write("log_record", "zeros", &[0; 40]);
        let mut backup = Vec::new();
        let mut w = crate::store::backup::Writer::new(&mut backup, "vault", 0).expect("writer");
        w.entry(b"m/vault", b"{}").expect("entry");
        w.group(&group).expect("group");
        w.finish(7).expect("finish");
        write("backup", "small", &backup);
        let route_seeds: &[(&str, &[u8])] = &[
            ("health", b"\x00/v1/sys/health"),
            ("put", b"\x01/v1/tenants/acme/tokens/t1"),
            ("unseal", b"\x02/v1/tenants/acme/tokens/t1/unseal"),
            (
                "audit",
                b"\x00/v1/audit?tenant=acme&op=token.put&limit=5&after=3&node=a",
            ),
            ("destroy", b"\x03/v1/tenants/acme?confirm=acme"),
            ("history", b"\x00/v1/keys/history?tenant=acme"),
            ("list", b"\x00/v1/tenants/acme/tokens?after=t1&limit=2"),
        ];
        for (name, data) in route_seeds {
            write("route", name, data);
        }
        let body_seeds: &[(&str, &[u8])] = &[
            ("put", b"\x00{\"secret\":\"s\",\"binding\":{\"subject\":\"u\",\"bank\":\"b\",\"account\":\"DE89\",\"scope\":\"accounts\"},\"expected_revision\":0}"),
            ("unseal", b"\x01{\"expect\":{\"account\":\"DE89\"}}"),
            ("transit", b"\x02{\"plaintext\":\"hi\",\"context\":\"c\"}"),
            ("retire", b"\x05{\"below_version\":2}"),
            ("hash", b"\x0b{\"value\":\"DE89\"}"),
            ("lease", b"\x09{\"seconds\":30}"),
            ("release", b"\x0a{\"lease\":\"9f1c0e2a7b4d4c61a0e5d3b2c1f0e9d8\"}"),
        ];
        for (name, data) in body_seeds {
            write("body", name, data);
        }
        write(
            "config",
            "example",
            b"data_dir = \"/var/lib/vaultd\"\nsocket = \"/run/vaultd/vaultd.sock\"\nmax_connections = 256\n\n[kms]\nprovider = \"local\"\nkey_dir = \"/etc/vaultd/keys\"\nkey_id = \"main\"\n\n[[policy]]\nname = \"app\"\nuids = [1000]\ncapabilities = [\"token:unseal\"]\ntenants = [\"acme*\"]\nquotas = [{ capabilities = [\"token:unseal\"], per_second = 50, per_day = 100000 }]\nbrakes = [{ capabilities = [\"token:unseal\"], distinct_tokens = 500, window_secs = 3600 }]\n",
        );
        let entry = br#"{"seq":1,"time":"2026-11-23T17:37:44Z","request":"r","actor":"system","op":"sys.init","outcome":"ok","prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        let head = br#"{"head":{"seq":1,"hash":"00","time":"2026-11-23T17:37:44Z","vault_id":"v","node":"a","signature":"00"}}"#;
        write(
            "audit_export",
            "entry-and-head",
            &[&entry[..], b"\n", &head[..], b"\n"].concat(),
        );
    }
}
