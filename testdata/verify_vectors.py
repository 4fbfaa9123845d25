#!/usr/bin/env python3
"""Independent check of record formats v1 and v2, written from docs/record-format.md alone.

Decrypts every vector in testdata/ with the `cryptography` package (HKDF-SHA256, AES-256-GCM)
and checks that each record-v1/record-v2/transit-v1 vector opens to its stated plaintext and that every
fail_* vector fails. Exits non-zero on any disagreement.
"""
import base64, json, pathlib, struct, sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = pathlib.Path(__file__).parent


def aad(label: bytes, fields) -> bytes:
    return label + b"".join(struct.pack(">I", len(f)) + f for f in fields)


def hkdf(dek: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(dek)


def open_record(v):
    rec = bytes.fromhex(v["record"])
    if len(rec) < 73 + 16 or rec[0] not in (1, 2):
        raise ValueError("malformed")
    salt, nonce = rec[29:61], rec[61:73]
    key = hkdf(bytes.fromhex(v["dek"]), salt, b"vaultd/v1/record-key")
    ad = aad(b"vaultd/v1/record", [v["vault_id"].encode(), v["tenant"].encode(), v["token"].encode(), rec[:73]])
    plain = AESGCM(key).decrypt(nonce, rec[73:], ad)
    decoy = False
    if rec[0] == 2:  # v2: a flags byte first, bit 0 = decoy, no other bit defined
        if plain[0] & ~1:
            raise ValueError("flags")
        decoy, plain = bool(plain[0] & 1), plain[1:]
    fields, pos = [], 0
    for _ in range(4):
        (n,) = struct.unpack(">H", plain[pos:pos + 2])
        fields.append(plain[pos + 2:pos + 2 + n].decode())
        pos += 2 + n
    key_version, revision, expires, updated = struct.unpack(">IQqq", rec[1:29])
    header = {"key_version": key_version, "revision": revision,
              "expires_at": None if expires == -(2**63) else expires, "updated_at": updated}
    return header, dict(zip(["subject", "bank", "account", "scope"], fields)), plain[pos:], decoy


def open_transit(v):
    prefix, version, body = v["sealed"].split(":", 2)
    if prefix != "vault" or not version.startswith("v"):
        raise ValueError("malformed")
    version = int(version[1:])
    raw = base64.b64decode(body, validate=True)
    if raw[0] != 1:
        raise ValueError("format")
    salt, nonce = raw[1:33], raw[33:45]
    key = hkdf(bytes.fromhex(v["dek"]), salt, b"vaultd/v1/transit-key")
    ad = aad(b"vaultd/v1/transit", [v["vault_id"].encode(), v["tenant"].encode(),
                                    struct.pack(">I", version), v["context"].encode(), b"\x01"])
    return AESGCM(key).decrypt(nonce, raw[45:], ad)


def main():
    checked = 0
    for name in ["record-v1.json", "record-v2.json"]:
        for v in json.loads((HERE / name).read_text()):
            assert v["record"][:2] == f"{v['format']:02x}", v["description"]
            header, binding, secret, decoy = open_record(v)
            assert header == v["header"], (header, v["header"])
            assert binding == v["binding"], binding
            assert secret.hex() == v["secret"]
            assert decoy == v.get("decoy", False), v["description"]
            checked += 1
    for v in json.loads((HERE / "transit-v1.json").read_text()):
        assert open_transit(v).hex() == v["plaintext"]
        checked += 1
    for path in sorted(HERE.glob("fail_*.json")):
        v = json.loads(path.read_text())
        try:
            if v["kind"] == "record":
                _, binding, _, _ = open_record(v)
                expected = (v.get("expect") or {}).get("account")
                if expected is None or expected == binding["account"]:
                    sys.exit(f"{path.name}: opened but must fail")
                failed = "binding_mismatch"
            else:
                open_transit(v)
                sys.exit(f"{path.name}: opened but must fail")
        except InvalidTag:
            failed = "decryption_failed"
        except (ValueError, struct.error):
            failed = "malformed"
        if failed != v["error"]:
            sys.exit(f"{path.name}: failed as {failed}, but the vector says {v['error']}")
        checked += 1
    print(f"record formats v1 and v2: {checked} vectors agree with the independent implementation")


if __name__ == "__main__":
    main()
