"""PII and secrets: validated matches (Luhn, IBAN check digits, SSN ranges, real phone numbers, public IPs)."""

from __future__ import annotations

import pytest

from ftwizard.data.pii import find_pii, redact


@pytest.mark.parametrize("text,kind,match", [
    ("write to jane.doe+shop@example.co.uk today", "email", "jane.doe+shop@example.co.uk"),
    ("call +1 415-555-2671 now", "phone", "+1 415-555-2671"),
    ("call (212) 555-0199 now", "phone", "(212) 555-0199"),
    ("ring +44 20 7946 0958", "phone", "+44 20 7946 0958"),
    ("card 4111 1111 1111 1111 ok", "credit_card", "4111 1111 1111 1111"),
    ("amex 378282246310005.", "credit_card", "378282246310005"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("ssn 123-45-6789", "ssn", "123-45-6789"),
    ("from 8.8.8.8 today", "ip", "8.8.8.8"),
    ("v6 2001:4860:4860::8888", "ip", "2001:4860:4860::8888"),
    ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "secret", "sk-proj-abcdefghijklmnopqrstuvwxyz0123"),
    ("token hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "secret", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"),
    ("aws AKIAIOSFODNN7EXAMPLE", "secret", "AKIAIOSFODNN7EXAMPLE"),
    ("-----BEGIN RSA PRIVATE KEY-----", "secret", "-----BEGIN RSA PRIVATE KEY-----"),
])
def test_finds(text, kind, match):
    found = find_pii(text)
    assert [(m.kind, m.text) for m in found] == [(kind, match)]
    assert text[found[0].start:found[0].end] == match


@pytest.mark.parametrize("text", [
    "order 1234567890123456 shipped",      # 16 digits failing Luhn
    "ssn-like 000-12-3456 and 666-12-3456",  # invalid SSN areas
    "lan 192.168.1.10 and 127.0.0.1",       # private and loopback
    "version v1.2.3.4 and 10:30:45",        # version, time
    "IBAN DE00 3704 0044 0532 0130 00",      # wrong check digits
    "skip the sk-short key and a task-force",
    "on 2024-05-03 at 12:30, room 1234",
    "tel 555-0100",                          # not a valid full number
])
def test_ignores_lookalikes(text):
    assert find_pii(text) == []


def test_redact_and_mask():
    text = "mail a.b@example.com or call +1 415-555-2671, card 4111111111111111"
    out, kinds = redact(text)
    assert out == "mail [EMAIL] or call [PHONE], card [CREDIT_CARD]"
    assert kinds == ["email", "phone", "credit_card"]
    masked = find_pii("card 4111111111111111")[0].masked()
    assert masked.startswith("4111") and masked.endswith("1111") and "*" in masked
    assert redact("nothing here") == ("nothing here", [])
