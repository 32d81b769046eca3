"""Keyed-HMAC pseudonyms for customer contact data and identifiers.

Raw contact data (email, phone, postal address) never reaches storage, logs, dead letters,
metrics or responses: it is replaced at the edge by ``HMAC-SHA256(key, normalised value)``.
The key is a secret held in configuration (``DDSO_PII_KEY``); without the key a pseudonym
cannot be reversed or recomputed from a guess, so rainbow tables over e-mail addresses fail.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"
_WS = re.compile(r"\s+")
_NON_DIGIT = re.compile(r"[^0-9+]")


def normalise_email(value: str) -> str:
    return _WS.sub("", value).lower()


def normalise_phone(value: str) -> str:
    return _NON_DIGIT.sub("", value)


def pseudonymise(value: str, key: bytes, *, kind: str = "generic") -> str:
    """Return the hex HMAC-SHA256 pseudonym of ``value`` under ``key``.

    ``kind`` is mixed into the message so that the same string used as an e-mail and as a
    phone number yields unrelated pseudonyms.
    """
    if not key:
        raise ValueError("pseudonymise: the HMAC key is empty; set DDSO_PII_KEY")
    if kind == "email":
        value = normalise_email(value)
    elif kind == "phone":
        value = normalise_phone(value)
    msg = f"{kind}\x00{value}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def redact_customer_id(customer_id: str, key: bytes) -> str:
    """A short, stable pseudonym for a customer id, fit for logs and audit records."""
    return pseudonymise(customer_id, key, kind="customer")[:16]
