"""Keys read at start: Clerk's PEM public key (inline or from a file) and the assertion signing key.

Why a module of its own: it is the only part of the settings that touches the file system and the
`cryptography` library, and a key is turned into a loaded key object once, here.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from gateway.settings.errors import InvalidValue
from gateway.settings.parsing import parse_text
from gateway.settings.values import PemKey


def _normalize_pem(text: str, kind: str) -> bytes:
    """Accept what Clerk's SDK accepts: literal `\\n` from env files, or the bare base64 body."""
    text = text.replace("\\n", "\n").strip()
    if "-----BEGIN" not in text:
        body = "".join(text.split())
        text = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"
    return text.encode()


def _load_rsa_public_key(text: str) -> RSAPublicKey:
    try:
        key = load_pem_public_key(_normalize_pem(text, "PUBLIC KEY"))
    except (ValueError, TypeError):
        raise InvalidValue("not a PEM RSA public key") from None
    if not isinstance(key, RSAPublicKey):
        raise InvalidValue("not a PEM RSA public key")
    return key


def _read_key_file(value: object) -> tuple[Path, str]:
    path = Path(parse_text(value)).expanduser()
    try:
        return path, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not a text file"
        raise InvalidValue(f"cannot read {str(path)!r}: {reason}") from None


def parse_jwt_key(value: object) -> PemKey[RSAPublicKey]:
    return PemKey(source="CLERK_JWT_KEY", key=_load_rsa_public_key(parse_text(value)))


def parse_jwt_key_file(value: object) -> PemKey[RSAPublicKey]:
    path, text = _read_key_file(value)
    try:
        return PemKey(source=str(path), key=_load_rsa_public_key(text))
    except InvalidValue:
        raise InvalidValue(f"{str(path)!r} is not a PEM RSA public key") from None


_SIGNING_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


def parse_private_key_file(value: object) -> PemKey[PrivateKeyTypes]:
    path, text = _read_key_file(value)
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise InvalidValue(f"{str(path)!r} is not an unencrypted PEM private key") from None
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise InvalidValue(f"{str(path)!r} is not an RSA, EC or EdDSA private key")
    return PemKey(source=str(path), key=key)
