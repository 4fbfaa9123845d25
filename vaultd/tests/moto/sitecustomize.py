"""Loaded into moto_server by the vaultd test helper (PYTHONPATH=<this dir>).

moto (5.2.5 when written) accepts DisableKey and ScheduleKeyDeletion but keeps using such a key
for Encrypt, Decrypt, GenerateDataKey and ReEncrypt. AWS KMS refuses them, as its API reference
documents: a disabled key gives DisabledException, a key pending deletion gives
KMSInvalidStateException ("<key ARN> is pending deletion."). This patch makes moto answer the
same way, so that vaultd's fault tests see what AWS KMS sends. It changes nothing else.
"""

try:
    from moto.core.exceptions import JsonRESTError
    from moto.kms import models as _models
except ImportError:  # not moto's interpreter: nothing to patch
    _models = None


def _check_usable(backend, key_id):
    key = backend.keys.get(backend.any_id_to_key_id(key_id))
    if key is None:
        return
    if key.key_state == "Disabled":
        raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
    if key.key_state == "PendingDeletion":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is pending deletion.")


if _models is not None:
    _encrypt = _models.KmsBackend.encrypt
    _decrypt = _models.KmsBackend.decrypt

    def encrypt(self, key_id, plaintext, encryption_context):
        _check_usable(self, key_id)
        return _encrypt(self, key_id, plaintext, encryption_context)

    def decrypt(self, ciphertext_blob, encryption_context, key_id=None):
        plaintext, arn = _decrypt(self, ciphertext_blob, encryption_context, key_id)
        _check_usable(self, arn)
        return plaintext, arn

    _models.KmsBackend.encrypt = encrypt
    _models.KmsBackend.decrypt = decrypt
