"""API keys: random bearer tokens, stored only as keyed hashes, each with scopes.

A token reads ``ddso_<key id>_<secret>``: the key id (12 hex digits) names the record, the
secret (43 url-safe characters, 256 random bits) proves possession. Only
``HMAC-SHA256(server secret, token)`` is stored, so a leaked key file or Redis dump grants
nothing, and the comparison is constant-time. A keyed hash rather than a slow KDF is enough
because the tokens are uniformly random: there is no dictionary to guess from.

Scopes are independent: ``admin`` does not imply ``decide`` or ``ingest``; a key that must do
everything is created with all three.

Two backends hold the records: :class:`FileKeyBackend` (the embedded default: one JSON file,
mode 0600, replaced atomically) and :class:`RedisKeyBackend` (production: one hash per key).
:class:`ApiKeyStore` holds the rules and works over either. Serving reads Redis through
:class:`CachedKeyBackend`: a record is re-read at most every ``ttl_s`` seconds (so a
revocation takes effect within ``ttl_s``), and while Redis is down, keys seen in the last
``stale_s`` seconds still authenticate; an unseen key gets 503 until Redis is back.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import redis

from ddso.errors import DataFileError, ServiceError, UserError
from ddso.io.redis import key as redis_key
from ddso.security.errors import AuthenticationError, PermissionDeniedError

SCOPES = frozenset({"decide", "ingest", "admin"})
TOKEN_PREFIX = "ddso_"
_TOKEN = re.compile(r"^ddso_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_HASH_SCHEME = "hmac-sha256:"
FILE_FORMAT = "ddso-api-keys/1"


@dataclass(frozen=True)
class ApiKey:
    """One API key's record. ``token_hash`` is the keyed hash; the token itself is never kept."""

    key_id: str
    token_hash: str
    scopes: frozenset[str]
    created_at: float
    name: str = ""
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def describe(self) -> dict[str, Any]:
        """The record without its hash, for ``ddso keys list`` and logs."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.describe(), "token_hash": self.token_hash}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiKey:
        return cls(
            key_id=d["key_id"],
            token_hash=d["token_hash"],
            scopes=frozenset(d["scopes"]),
            created_at=float(d["created_at"]),
            name=d.get("name", ""),
            revoked_at=None if d.get("revoked_at") is None else float(d["revoked_at"]),
        )


def parse_scopes(scopes: str | Iterable[str]) -> frozenset[str]:
    """Scopes from ``"decide,ingest"`` or an iterable; unknown or no scope is a UserError."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    found = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(found - SCOPES)
    if unknown:
        raise UserError(
            f"unknown API key scope {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(sorted(SCOPES))}"
        )
    if not found:
        raise UserError(f"an API key needs at least one scope; choose from {sorted(SCOPES)}")
    return found


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 if absent or not Bearer."""
    if not authorization:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "the Authorization header must be 'Bearer <key>' (other schemes are not accepted)"
        )
    return token.strip()


class KeyBackend(Protocol):
    """Where :class:`ApiKeyStore` keeps its records."""

    def get(self, key_id: str) -> ApiKey | None: ...

    def put(self, record: ApiKey) -> None: ...

    def all(self) -> list[ApiKey]: ...


class ApiKeyStore:
    """Creates, lists, revokes and checks API keys over a :class:`KeyBackend`.

    ``secret`` is the server-side HMAC key; every replica must use the same one, and changing
    it invalidates every key issued before.
    """

    def __init__(self, backend: KeyBackend, secret: bytes):
        if len(secret) < 16:
            raise UserError(
                f"the API key hashing secret is {len(secret)} bytes; use at least 16 random "
                "bytes (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        self.backend = backend
        self._secret = secret

    def _hash(self, token: str) -> str:
        return _HASH_SCHEME + hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    def create_key(self, scopes: str | Iterable[str], name: str = "") -> tuple[str, str]:
        """A new key with ``scopes``; returns ``(key_id, token)``. The token is shown once."""
        wanted = parse_scopes(scopes)
        key_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        self.backend.put(
            ApiKey(
                key_id=key_id,
                token_hash=self._hash(token),
                scopes=wanted,
                created_at=time.time(),
                name=name,
            )
        )
        return key_id, token

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return sorted(self.backend.all(), key=lambda k: (k.created_at, k.key_id))

    def revoke_key(self, key_id: str) -> ApiKey:
        """Mark ``key_id`` revoked (idempotent); the record stays for audit."""
        record = self.backend.get(key_id) if _KEY_ID.match(key_id) else None
        if record is None:
            raise UserError(f"no API key with id {key_id!r}; see `ddso keys list`")
        if record.revoked:
            return record
        revoked = replace(record, revoked_at=time.time())
        self.backend.put(revoked)
        return revoked

    def authenticate(self, token: str, scope: str) -> str:
        """The key id of ``token`` if it is valid and has ``scope``.

        Raises :class:`AuthenticationError` (401) for a malformed, unknown or revoked token and
        :class:`PermissionDeniedError` (403) for a valid key without ``scope``.
        """
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r} is not one of {sorted(SCOPES)}")
        match = _TOKEN.match(token)
        if match is None:
            raise AuthenticationError(
                "malformed API key: expected 'ddso_<12 hex digits>_<43 characters>'"
            )
        key_id = match.group(1)
        record = self.backend.get(key_id)
        presented = self._hash(token)  # also for an unknown id: both paths take the same time
        if record is None or not hmac.compare_digest(presented, record.token_hash):
            raise AuthenticationError(f"unknown API key {key_id}")
        if record.revoked:
            raise AuthenticationError(f"API key {key_id} is revoked; ask an admin for a new one")
        if scope not in record.scopes:
            has = ", ".join(sorted(record.scopes))
            raise PermissionDeniedError(f"API key {key_id} lacks scope {scope!r} (it has {has})")
        return key_id


class FileKeyBackend:
    """Records in one JSON file (mode 0600), rewritten atomically under an exclusive lock.

    Reads are cached and reloaded when the file changes, so a key revoked with the CLI is
    refused by a running server from its next request on.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._cache: tuple[tuple[int, int, int], dict[str, ApiKey]] | None = None

    def get(self, key_id: str) -> ApiKey | None:
        return self._records().get(key_id)

    def all(self) -> list[ApiKey]:
        return list(self._records().values())

    def put(self, record: ApiKey) -> None:
        with self._locked():
            records = self._load()
            records[record.key_id] = record
            self._write(records)

    def _records(self) -> dict[str, ApiKey]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is None or self._cache[0] != signature:
            self._cache = (signature, self._load())
        return self._cache[1]

    def _load(self) -> dict[str, ApiKey]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            if data.get("format") != FILE_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FILE_FORMAT!r}")
            records = [ApiKey.from_dict(d) for d in data["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataFileError(
                f"{self.path}: not a valid API key file ({type(e).__name__}: {e}); restore it "
                "from a backup or move it away and create new keys"
            ) from None
        return {r.key_id: r for r in records}

    def _write(self, records: dict[str, ApiKey]) -> None:
        body = {"format": FILE_FORMAT, "keys": [r.to_dict() for r in records.values()]}
        # mkstemp creates the file with mode 0600; replacing makes readers see old or new.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class CachedKeyBackend:
    """A read-through cache over another backend, which keeps serving when it fails.

    ``get`` answers from the cache while the record is younger than ``ttl_s``; after that
    it asks ``inner`` again. When ``inner`` raises :class:`ServiceError` (Redis down), a
    record read within ``stale_s`` is answered instead. Unknown ids are cached too (as
    absent), so a flood of bad keys costs one read per id per ``ttl_s``. ``put`` and ``all``
    go to ``inner``.
    """

    def __init__(self, inner: KeyBackend, ttl_s: float = 30.0, stale_s: float = 3600.0,
                 clock: Any = time.monotonic):
        if not 0 <= ttl_s <= stale_s:
            raise ValueError(f"need 0 <= ttl_s <= stale_s, got {ttl_s}, {stale_s}")
        self.inner = inner
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> ApiKey | None:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            record = self.inner.get(key_id)
        except ServiceError:
            if cached is not None and now - cached[0] < self.stale_s:
                return cached[1]
            raise
        with self._lock:
            if len(self._cache) > 100_000:  # ids are attacker-chosen: bound the memory
                self._cache.clear()
            self._cache[key_id] = (now, record)
        return record

    def put(self, record: ApiKey) -> None:
        self.inner.put(record)
        with self._lock:
            self._cache.pop(record.key_id, None)

    def all(self) -> list[ApiKey]:
        return self.inner.all()


class RedisKeyBackend:
    """Records in Redis: hash ``<prefix>apikey:<key id>``, ids in the set ``<prefix>apikeys``."""

    def __init__(self, client: redis.Redis, prefix: str = "ddso:"):
        self.client = client
        self.prefix = prefix
        self._index = redis_key(prefix, "apikeys")

    def _key(self, key_id: str) -> str:
        return redis_key(self.prefix, "apikey", key_id)

    def get(self, key_id: str) -> ApiKey | None:
        try:
            raw = self.client.hgetall(self._key(key_id))
        except redis.RedisError as e:
            raise ServiceError(f"redis: reading API key {key_id} failed ({e})") from e
        return _from_hash(raw) if raw else None

    def put(self, record: ApiKey) -> None:
        fields = {
            "key_id": record.key_id,
            "token_hash": record.token_hash,
            "scopes": ",".join(sorted(record.scopes)),
            "created_at": repr(record.created_at),
            "name": record.name,
            "revoked_at": "" if record.revoked_at is None else repr(record.revoked_at),
        }
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self._key(record.key_id), mapping=fields)
            pipe.sadd(self._index, record.key_id)
            pipe.execute()
        except redis.RedisError as e:
            raise ServiceError(f"redis: writing API key {record.key_id} failed ({e})") from e

    def all(self) -> list[ApiKey]:
        try:
            ids = sorted(i.decode() for i in self.client.smembers(self._index))
            pipe = self.client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self._key(key_id))
            rows = pipe.execute()
        except redis.RedisError as e:
            raise ServiceError(f"redis: listing API keys failed ({e})") from e
        return [_from_hash(raw) for raw in rows if raw]


def _from_hash(raw: dict[bytes, bytes]) -> ApiKey:
    d = {k.decode(): v.decode() for k, v in raw.items()}
    return ApiKey(
        key_id=d["key_id"],
        token_hash=d["token_hash"],
        scopes=frozenset(s for s in d["scopes"].split(",") if s),
        created_at=float(d["created_at"]),
        name=d.get("name", ""),
        revoked_at=float(d["revoked_at"]) if d.get("revoked_at") else None,
    )
