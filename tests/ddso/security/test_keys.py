"""API keys over both backends: the JSON file (unit) and Redis (integration)."""

import json
import stat

import pytest

from ddso.errors import DataFileError, ServiceError, UserError
from ddso.security.errors import AuthenticationError, PermissionDeniedError
from ddso.security.keys import (
    ApiKeyStore,
    CachedKeyBackend,
    FileKeyBackend,
    RedisKeyBackend,
    bearer_token,
    parse_scopes,
)

SECRET = b"s" * 32


@pytest.fixture(
    params=[
        pytest.param("file", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def backend(request, tmp_path):
    if request.param == "file":
        return FileKeyBackend(tmp_path / "keys" / "api_keys.json")
    client = request.getfixturevalue("redis_client")
    return RedisKeyBackend(client, prefix=request.getfixturevalue("redis_prefix"))


@pytest.fixture
def store(backend):
    return ApiKeyStore(backend, SECRET)


def test_a_created_key_authenticates_for_its_scopes(store):
    key_id, token = store.create_key(["decide", "ingest"], name="web shop")
    assert token.startswith(f"ddso_{key_id}_") and len(token) == 5 + 12 + 1 + 43
    assert store.authenticate(token, "decide") == key_id
    assert store.authenticate(token, "ingest") == key_id
    [record] = store.list_keys()
    assert record.describe() == {
        "key_id": key_id,
        "name": "web shop",
        "scopes": ["decide", "ingest"],
        "created_at": record.created_at,
        "revoked_at": None,
    }
    assert token not in json.dumps(record.to_dict())


def test_a_missing_scope_is_403_and_names_it(store):
    key_id, token = store.create_key("decide")
    with pytest.raises(PermissionDeniedError, match="lacks scope 'admin'") as err:
        store.authenticate(token, "admin")
    assert err.value.status_code == 403 and key_id in str(err.value)


def test_admin_does_not_imply_other_scopes(store):
    _, token = store.create_key("admin")
    with pytest.raises(PermissionDeniedError):
        store.authenticate(token, "decide")


@pytest.mark.parametrize(
    "bad",
    ["", "hello", "ddso_0123456789ab_short", "Bearer ddso_x", "ddso_XYZ456789abc_" + "a" * 43],
)
def test_malformed_tokens_are_401(store, bad):
    with pytest.raises(AuthenticationError, match="malformed") as err:
        store.authenticate(bad, "decide")
    assert err.value.status_code == 401 and "WWW-Authenticate" in err.value.headers


def test_unknown_and_forged_tokens_are_401(store):
    key_id, token = store.create_key("decide")
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    with pytest.raises(AuthenticationError, match=f"unknown API key {key_id}"):
        store.authenticate(forged, "decide")
    with pytest.raises(AuthenticationError, match="unknown API key 0123456789ab"):
        store.authenticate("ddso_0123456789ab_" + "a" * 43, "decide")


def test_a_different_server_secret_recognises_no_key(store):
    _, token = store.create_key("decide")
    other = ApiKeyStore(store.backend, b"t" * 32)
    with pytest.raises(AuthenticationError, match="unknown"):
        other.authenticate(token, "decide")


def test_revoked_keys_are_401_and_stay_listed(store):
    key_id, token = store.create_key("decide")
    kept_id, kept = store.create_key("decide")
    revoked = store.revoke_key(key_id)
    assert revoked.revoked and store.revoke_key(key_id) == revoked  # idempotent
    with pytest.raises(AuthenticationError, match="revoked") as err:
        store.authenticate(token, "decide")
    assert err.value.status_code == 401
    assert store.authenticate(kept, "decide") == kept_id
    assert [(k.key_id, k.revoked) for k in store.list_keys()] == [(key_id, True), (kept_id, False)]
    with pytest.raises(UserError, match="no API key with id 'nope'"):
        store.revoke_key("nope")


def test_a_second_store_on_the_same_backend_sees_creation_and_revocation(store, backend):
    # One store is the running server, the other the CLI (or another replica).
    server = ApiKeyStore(type(backend)(**_same(backend)), SECRET)
    key_id, token = store.create_key("ingest")
    assert server.authenticate(token, "ingest") == key_id
    store.revoke_key(key_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        server.authenticate(token, "ingest")


def _same(backend):
    if isinstance(backend, FileKeyBackend):
        return {"path": backend.path}
    return {"client": backend.client, "prefix": backend.prefix}


@pytest.mark.unit
def test_the_key_file_is_private_and_holds_no_token(tmp_path):
    path = tmp_path / "api_keys.json"
    store = ApiKeyStore(FileKeyBackend(path), SECRET)
    tokens = [store.create_key("decide")[1] for _ in range(3)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert not any(t in text or t.split("_", 2)[2] in text for t in tokens)
    assert json.loads(text)["format"] == "ddso-api-keys/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api_keys.json", "api_keys.json.lock"]


@pytest.mark.unit
def test_a_corrupt_key_file_names_itself(tmp_path):
    path = tmp_path / "api_keys.json"
    path.write_text('{"keys": []}')
    with pytest.raises(DataFileError, match=str(path)):
        ApiKeyStore(FileKeyBackend(path), SECRET).list_keys()


@pytest.mark.integration
def test_redis_holds_one_hash_per_key_without_the_token(redis_client, redis_prefix):
    store = ApiKeyStore(RedisKeyBackend(redis_client, prefix=redis_prefix), SECRET)
    key_id, token = store.create_key("decide,admin")
    raw = redis_client.hgetall(f"{redis_prefix}apikey:{key_id}")
    assert raw[b"scopes"] == b"admin,decide" and raw[b"token_hash"].startswith(b"hmac-sha256:")
    assert token.encode() not in b"".join(raw.values())
    assert redis_client.smembers(f"{redis_prefix}apikeys") == {key_id.encode()}


@pytest.mark.unit
def test_scopes_are_checked_and_named():
    assert parse_scopes(" decide, ingest ") == {"decide", "ingest"}
    with pytest.raises(UserError, match="unknown API key scope 'read'.*admin, decide, ingest"):
        parse_scopes(["decide", "read"])
    with pytest.raises(UserError, match="at least one scope"):
        parse_scopes("")


@pytest.mark.unit
def test_bearer_header_parsing():
    assert bearer_token("Bearer ddso_abc") == "ddso_abc"
    assert bearer_token("bearer  ddso_abc ") == "ddso_abc"
    for bad in (None, "", "Basic dXNlcjpwYXNz", "Bearer "):
        with pytest.raises(AuthenticationError):
            bearer_token(bad)


@pytest.mark.unit
def test_a_short_server_secret_is_refused(tmp_path):
    with pytest.raises(UserError, match="at least 16"):
        ApiKeyStore(FileKeyBackend(tmp_path / "k.json"), b"short")


class _Flaky:
    """A backend that fails (Redis down) while ``down`` is set."""

    def __init__(self, inner):
        self.inner, self.down, self.reads = inner, False, 0

    def get(self, key_id):
        self.reads += 1
        if self.down:
            raise ServiceError("redis: connection refused")
        return self.inner.get(key_id)

    def put(self, record):
        self.inner.put(record)

    def all(self):
        return self.inner.all()


@pytest.mark.unit
def test_the_cache_rereads_after_its_ttl_and_serves_seen_keys_while_the_backend_is_down(
    tmp_path, clock
):
    flaky = _Flaky(FileKeyBackend(tmp_path / "keys.json"))
    store = ApiKeyStore(CachedKeyBackend(flaky, ttl_s=30, stale_s=600, clock=clock), SECRET)
    seen_id, seen = store.create_key("decide")
    _, unseen = store.create_key("decide")
    assert store.authenticate(seen, "decide") == seen_id
    store.authenticate(seen, "decide")
    assert flaky.reads == 1  # the second check came from the cache
    clock.advance(31)
    store.authenticate(seen, "decide")
    assert flaky.reads == 2
    flaky.down = True
    clock.advance(31)
    assert store.authenticate(seen, "decide") == seen_id  # stale, but the backend is down
    with pytest.raises(ServiceError):
        store.authenticate(unseen, "decide")  # never seen: no way to check it -> 503
    clock.advance(600)
    with pytest.raises(ServiceError):
        store.authenticate(seen, "decide")  # too old to trust


@pytest.mark.unit
def test_a_revocation_through_the_cache_takes_effect_at_once_here_and_within_ttl_elsewhere(
    tmp_path, clock
):
    backend = FileKeyBackend(tmp_path / "keys.json")
    here = ApiKeyStore(CachedKeyBackend(backend, ttl_s=30, clock=clock), SECRET)
    there = ApiKeyStore(CachedKeyBackend(backend, ttl_s=30, clock=clock), SECRET)
    key_id, token = here.create_key("decide")
    assert there.authenticate(token, "decide") == key_id
    here.revoke_key(key_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        here.authenticate(token, "decide")
    assert there.authenticate(token, "decide") == key_id  # another replica's cache, for now
    clock.advance(30)
    with pytest.raises(AuthenticationError, match="revoked"):
        there.authenticate(token, "decide")
