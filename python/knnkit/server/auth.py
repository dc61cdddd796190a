"""API keys for ``knnkit serve``: a TOML file of hashed keys with roles scoped to collections.

The file (``--keys keys.toml``) holds one table per key::

    [[keys]]
    name = "ingest"                      # shown in logs, never the key itself
    role = "write"                       # "read", "write" or "admin"
    collections = ["docs", "news"]       # or ["*"]: every collection
    hash = "sha256:9f86d08..."           # sha256 of the key, hex

Keys are random tokens of 256 bits (``knnkit keys add`` makes one, prints it once and stores only
its hash), so a plain SHA-256 is enough to keep a stolen keys file from revealing them: there is
nothing to brute-force. A presented key is hashed and compared with every stored hash with
``hmac.compare_digest`` (constant time, no early exit). Roles nest: ``admin`` ⊃ ``write`` ⊃
``read``; ``admin`` also creates and deletes collections (those in its scope) and takes backups
(with ``["*"]`` only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("read", "write", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}


@dataclass(frozen=True)
class Key:
    name: str
    role: str
    collections: tuple[str, ...]
    digest: bytes

    def allows(self, role: str, collection: str | None) -> bool:
        """Whether this key may act with ``role`` on ``collection`` (None: the whole store)."""
        if _RANK[self.role] < _RANK[role]:
            return False
        if "*" in self.collections:
            return True
        return collection is not None and collection in self.collections

    def sees(self, collection: str) -> bool:
        return "*" in self.collections or collection in self.collections


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _digest(stored: str, where: str) -> bytes:
    algo, _, hexdigest = stored.partition(":")
    if algo != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"{where}: hash: expected 'sha256:<64 hex digits>'")
    try:
        return bytes.fromhex(hexdigest)
    except ValueError:
        raise ValueError(f"{where}: hash: expected 'sha256:<64 hex digits>'") from None


def load_keys(path: str | os.PathLike[str]) -> list[Key]:
    """The keys of a keys file; ``ValueError`` naming the entry and field that is wrong."""
    import tomllib

    with open(path, "rb") as f:
        data = tomllib.load(f)
    entries = data.get("keys", [])
    if not isinstance(entries, list):
        raise ValueError("keys file: expected [[keys]] tables")
    out = []
    for i, e in enumerate(entries):
        where = f"keys file: entry {i + 1}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: expected a table")
        name = e.get("name", f"key{i + 1}")
        role = e.get("role")
        if role not in ROLES:
            raise ValueError(f"{where}: role: expected one of {ROLES}, got {role!r}")
        cols = e.get("collections", ["*"])
        if isinstance(cols, str):
            cols = [cols]
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols) or not cols:
            raise ValueError(f"{where}: collections: expected a non-empty list of names or ['*']")
        out.append(Key(str(name), role, tuple(cols), _digest(str(e.get("hash", "")), where)))
    return out


def find_key(keys: list[Key], presented: str) -> Key | None:
    """The key whose hash matches ``presented`` (every stored hash is compared)."""
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    found = None
    for k in keys:
        if hmac.compare_digest(k.digest, digest):
            found = k
    return found


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_key(path: str | os.PathLike[str], name: str, role: str, collections: list[str]) -> str:
    """Appends a new key to the keys file (created, mode 0600) and returns the key; only its hash
    is written."""
    if role not in ROLES:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    if not collections:
        raise ValueError("collections: expected at least one name, or '*'")
    p = Path(path)
    if p.exists():
        load_keys(p)  # refuse to append to a broken file
    key = "kk_" + secrets.token_urlsafe(32)
    entry = (
        "\n[[keys]]\n"
        f"name = {_toml_str(name)}\n"
        f"role = {_toml_str(role)}\n"
        f"collections = [{', '.join(_toml_str(c) for c in collections)}]\n"
        f"hash = {_toml_str(hash_key(key))}\n"
    )
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(entry)
    return key
