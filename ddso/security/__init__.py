"""Security of the decision API: API keys, rate limits, idempotency and request size.

One module per concept, each with an in-process implementation for the embedded default
(one replica) and a Redis one for production, chosen by configuration alone:

- :mod:`ddso.security.keys`: API keys stored only as keyed hashes, with scopes
  (``decide``, ``ingest``, ``admin``); a JSON file or Redis holds them.
- :mod:`ddso.security.ratelimit`: a token bucket per API key, shared by every replica
  through one atomic Redis script.
- :mod:`ddso.security.idempotency`: ``Idempotency-Key`` replay of stored responses.
- :mod:`ddso.security.body_size`: a pure ASGI middleware answering 413 for large bodies.
- :mod:`ddso.security.validation`: 422 answers naming the field, never echoing the input.
- :mod:`ddso.security.errors`: the errors above, each carrying its HTTP status.

Customer identifiers in logs and audit records go through :func:`ddso.pii.redact_customer_id`
(a 16-hex-digit keyed-HMAC pseudonym under ``settings.pii_key_bytes()``); nothing here
re-implements it.
"""
