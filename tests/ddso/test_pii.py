import pytest

from ddso.pii import pseudonymise, redact_customer_id

pytestmark = pytest.mark.unit


def test_pseudonyms_are_keyed_normalised_and_kind_separated():
    a = pseudonymise(" Jane.Doe@Example.com ", b"k1", kind="email")
    assert a == pseudonymise("jane.doe@example.com", b"k1", kind="email")
    assert a != pseudonymise("jane.doe@example.com", b"k2", kind="email")
    assert a != pseudonymise("jane.doe@example.com", b"k1", kind="phone")
    assert len(a) == 64 and "jane" not in a
    assert pseudonymise("+44 (20) 7946-0000", b"k", kind="phone") == pseudonymise(
        "+442079460000", b"k", kind="phone"
    )
    assert len(redact_customer_id("C1", b"k")) == 16


def test_empty_key_refused():
    with pytest.raises(ValueError, match="DDSO_PII_KEY"):
        pseudonymise("x", b"")
