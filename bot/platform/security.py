"""Keyed hashing of what we must recognise but never store in clear: API keys, codes, and the
relatives' chats and phone numbers where a record outlives them (pseudonyms)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def keyed_hash(secret_key: bytes, value: str) -> str:
    return hmac.new(secret_key, value.encode(), hashlib.sha256).hexdigest()


def pseudonym(secret_key: bytes, value: str) -> str:
    """`ps_` and a keyed hash of `value` (a chat, a phone number): the same value always gives the
    same pseudonym, so records stay linkable, but only SECRET_KEY can tell whose it is."""
    return "ps_" + keyed_hash(secret_key, f"pseudonym|{value}")


def new_api_key(hospital_code: str) -> str:
    """A key that names its hospital, so that checking it is one lookup and one constant-time
    comparison: `MRB.<43 random characters>`."""
    return f"{hospital_code}.{secrets.token_urlsafe(32)}"


def hospital_code_of(api_key: str) -> str | None:
    code, dot, rest = api_key.partition(".")
    return code if dot and code and rest else None


def key_matches(secret_key: bytes, api_key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(keyed_hash(secret_key, api_key), stored_hash)
