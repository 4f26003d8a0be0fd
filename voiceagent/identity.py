"""Who a chat's shopper is, as the shop's own backend vouches: an HMAC-signed token the widget is
given for a logged-in shopper. The chat trusts nothing else the browser says about identity.

token = base64url(JSON {"cid": customer id, "exp": unix seconds}) "." base64url(HMAC-SHA256(secret, first part))

The shop signs with the same `[security] identity_secret` (`sign_customer` shows how); an empty
secret accepts no token at all."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

MAX_TOKEN_CHARS = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest())


def sign_customer(cid: str, secret: str, ttl_s: float = 3600) -> str:
    """A token saying the shopper is `cid`, valid `ttl_s` seconds (what the shop's backend does)."""
    if not secret:
        raise ValueError("no identity secret: nothing can be signed")
    payload = _b64(json.dumps({"cid": cid, "exp": int(time.time() + ttl_s)}, separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_mac(payload, secret)}"


def verify_customer(token: str, secret: str, now: float | None = None) -> str | None:
    """The customer id the token vouches for; None when there is no secret, or the token is malformed,
    forged or expired."""
    if not secret or not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1 or not token.isascii():
        return None  # (a token is base64url and hex: anything else is not one)
    payload, mac = token.split(".")
    if not hmac.compare_digest(mac.encode("ascii", "replace"), _mac(payload, secret).encode("ascii")):
        return None
    try:
        claims = json.loads(_unb64(payload))
        cid, exp = claims["cid"], claims["exp"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(cid, str) or not cid or not isinstance(exp, (int, float)):
        return None
    return cid if (time.time() if now is None else now) < exp else None
