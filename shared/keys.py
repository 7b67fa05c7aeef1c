"""API keys: how they are made, and how they are stored (only as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Literal

KeyKind = Literal["live", "test"]
KEY_PREFIXES: dict[KeyKind, str] = {"live": "sk_live_", "test": "sk_test_"}
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_LENGTH = 40


def generate_key(kind: KeyKind) -> str:
    """A new key: the kind's prefix and 40 characters from `secrets` (about 238 bits)."""
    return KEY_PREFIXES[kind] + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))


def generate_key_id() -> str:
    """A public handle for a key, safe to log and to store in the ledger."""
    return "key_" + secrets.token_hex(6)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_kind(key: str) -> KeyKind | None:
    for kind, prefix in KEY_PREFIXES.items():
        if key.startswith(prefix):
            return kind
    return None
