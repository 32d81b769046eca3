"""The online store in Redis: one hash of daily partials per customer, applied atomically.

Keys (``<p>`` = the configured prefix, ``<v>`` = the feature-set version, the version tag)::

    <p>state:v<v>:<customer>   hash: d:<day>:<metric> -> sum, last_event_s, last_purchase_s,
                               last_contact_s, first_event_s, lv:<name> -> value,
                               lk:<name> -> ordering key of the event that wrote it
    <p>seen:v<v>:<customer>    sorted set: event id -> event time (dedupe window)
    <p>feat:v<v>:<customer>    hash: feature name -> value, of features computed over many
                               customers (the graph features), written whole by the stream

A micro-batch is applied by one Lua script call, so its dedupe checks, lateness routing and
increments happen together or not at all: a consumer killed mid-batch leaves either the
whole batch or none of it, and the redelivered batch is then skipped as duplicates. Both
keys expire ``ttl_s`` after the customer's last write (the TTL policy), and so does the
feature hash after its last write. The rules are those
of :mod:`ddso.stores.state`, the same as :class:`ddso.stores.online.InMemoryOnlineStore`.
"""

from __future__ import annotations

import json

import pandas as pd
import redis

from ddso.errors import ServiceError
from ddso.features.behaviour import DAY_S, MAX_WINDOW_DAYS
from ddso.features.sets import FEATURE_SET_VERSION
from ddso.stores.online import feature_values
from ddso.stores.state import ApplyResult, CustomerState, Update, timestamps_of

# ARGV: state prefix, seen prefix, lateness_s, ttl_s, day_s, max_window_days, and the updates
# as one JSON array of [customer, event id, time, order key, day, {metric: sum}, {stamp: time},
# {name: last value}] (one string: packing hundreds of thousands of arguments costs more than
# the script).
_APPLY = """
local sp, np, late_s, ttl, day_s, keep_days = ARGV[1], ARGV[2], tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local updates = cjson.decode(ARGV[7])
local applied, dups, late = 0, 0, {}
local touched = {}
for _, u in ipairs(updates) do
  local cid, eid, t, okey, day = u[1], u[2], u[3], u[4], u[5]
  local sk, nk = sp .. cid, np .. cid
  local wm = tonumber(redis.call('HGET', sk, 'last_event_s'))
  if wm and t < wm - late_s then
    table.insert(late, eid)
  elseif redis.call('ZSCORE', nk, eid) then
    dups = dups + 1
  else
    redis.call('ZADD', nk, t, eid)
    for metric, v in pairs(u[6]) do
      redis.call('HINCRBYFLOAT', sk, 'd:' .. day .. ':' .. metric, v)
    end
    for name, v in pairs(u[7]) do
      local cur = tonumber(redis.call('HGET', sk, name))
      local is_min = name == 'first_event_s'
      if (not cur) or (is_min and v < cur) or ((not is_min) and v > cur) then
        redis.call('HSET', sk, name, string.format('%.6f', v))
      end
    end
    for name, v in pairs(u[8]) do
      local cur = redis.call('HGET', sk, 'lk:' .. name)
      if (not cur) or okey > cur then
        redis.call('HSET', sk, 'lv:' .. name, v, 'lk:' .. name, okey)
      end
    end
    applied = applied + 1
    touched[cid] = true
  end
end
for cid, _ in pairs(touched) do
  local sk, nk = sp .. cid, np .. cid
  local wm = tonumber(redis.call('HGET', sk, 'last_event_s'))
  redis.call('ZREMRANGEBYSCORE', nk, '-inf', '(' .. (wm - late_s))
  local oldest = math.floor(wm / day_s) - keep_days
  local last_pruned = tonumber(redis.call('HGET', sk, 'pruned_day') or '-1')
  if oldest > last_pruned then
    for _, f in ipairs(redis.call('HKEYS', sk)) do
      local d = string.match(f, '^d:(%-?%d+):')
      if d and tonumber(d) < oldest then redis.call('HDEL', sk, f) end
    end
    redis.call('HSET', sk, 'pruned_day', oldest)
  end
  redis.call('EXPIRE', sk, ttl)
  redis.call('EXPIRE', nk, ttl)
end
return {applied, dups, late}
"""


_CHUNK = 1_000
"""Customers per pipeline round trip when writing computed features."""


def _order_key(u: Update) -> str:
    # Fixed width, so string order is (time, event id) order inside Lua.
    return f"{u.time_s:020.6f}|{u.event_id}"


def _num(x: float) -> str:
    return repr(float(x))


class RedisOnlineStore:
    """Customer state in Redis under ``prefix``; see the module docstring for the layout."""

    def __init__(self, client: redis.Redis, prefix: str = "ddso:", ttl_s: int = 90 * 24 * 3600):
        self.client = client
        self.state_prefix = f"{prefix}state:v{FEATURE_SET_VERSION}:"
        self.seen_prefix = f"{prefix}seen:v{FEATURE_SET_VERSION}:"
        self.features_prefix = f"{prefix}feat:v{FEATURE_SET_VERSION}:"
        self.ttl_s = ttl_s
        self._script = client.register_script(_APPLY)

    def apply(self, updates: list[Update], lateness_s: float) -> ApplyResult:
        if not updates:
            return ApplyResult()
        payload = json.dumps(
            [
                [
                    u.customer_id,
                    u.event_id,
                    u.time_s,
                    _order_key(u),
                    u.day,
                    u.sums,
                    timestamps_of(u),
                    u.last_values,
                ]
                for u in updates
            ]
        )
        args = [
            self.state_prefix,
            self.seen_prefix,
            _num(lateness_s),
            self.ttl_s,
            DAY_S,
            MAX_WINDOW_DAYS,
            payload,
        ]
        try:
            applied, dups, late = self._script(args=args)
        except redis.RedisError as e:
            raise ServiceError(f"redis: applying {len(updates)} updates failed ({e})") from e
        return ApplyResult(int(applied), int(dups), [x.decode() for x in late])

    def state(self, customer_id: str) -> CustomerState | None:
        try:
            raw = self.client.hgetall(self.state_prefix + customer_id)
        except redis.RedisError as e:
            raise ServiceError(f"redis: reading customer state failed ({e})") from e
        if not raw:
            return None
        st = CustomerState(daily={})
        for k, v in raw.items():
            key = k.decode()
            if key.startswith("d:"):
                _, day, metric = key.split(":", 2)
                st.daily.setdefault(int(day), {})[metric] = float(v)
            elif key.startswith("lv:"):
                st.last_values[key[3:]] = v.decode()
            elif key in ("last_event_s", "last_purchase_s", "last_contact_s", "first_event_s"):
                setattr(st, key, float(v))
        return st

    def put_features(self, rows: pd.DataFrame) -> int:
        """Write each row's values over the customer's stored ones (idempotent), in chunks.

        One pipeline per chunk, not a transaction: each customer's HSET is atomic, and a
        failed chunk is simply written again by the next refresh.
        """
        n = 0
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for cid, values in feature_values(rows):
                    key = self.features_prefix + cid
                    pipe.hset(key, mapping={k: _num(v) for k, v in values.items()})
                    pipe.expire(key, self.ttl_s)
                    n += 1
                    if n % _CHUNK == 0:
                        pipe.execute()
                pipe.execute()
        except redis.RedisError as e:
            raise ServiceError(
                f"redis: writing features of {len(rows)} customers failed ({e})"
            ) from e
        return n

    def get_features(self, customer_id: str) -> dict[str, float] | None:
        try:
            raw = self.client.hgetall(self.features_prefix + customer_id)
        except redis.RedisError as e:
            raise ServiceError(f"redis: reading customer features failed ({e})") from e
        return {k.decode(): float(v) for k, v in raw.items()} or None
