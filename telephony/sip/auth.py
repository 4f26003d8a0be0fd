"""HTTP digest authentication as SIP uses it (RFC 3261 22.4, RFC 2617, RFC 7616, RFC 8760).

Client side: a trunk or PBX answers the agent's REGISTER or INVITE with 401/407; the agent
parses the WWW-Authenticate / Proxy-Authenticate value into a Challenge and retries with
`authorization(...)` in Authorization / Proxy-Authorization. MD5 and SHA-256 (and their -sess
forms), with qop=auth when it is offered and the RFC 2069 form when no qop is.

Server side: DigestServer lets an operator make the agent challenge inbound INVITEs. Its nonces
are a timestamp signed with a per-process key, so they expire and cannot be forged without any
stored state; the price is that a response can be replayed until its nonce expires (the
transaction layer absorbs retransmissions anyway).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

_HASHES = {"MD5": "md5", "SHA-256": "sha256"}  # RFC 8760 names -> hashlib names
_ALGORITHMS = {name.upper(): name for base in _HASHES for name in (base, base + "-sess")}

_SCHEME = re.compile(r"[ \t]*([A-Za-z0-9\-]+)(?:[ \t]+|\Z)")
_AUTH_PARAM = re.compile(r'[ \t]*([A-Za-z0-9\-_.]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))[ \t]*(?:,|\Z)', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_NC = re.compile(r"[0-9A-Fa-f]{8}")


def _canonical_algorithm(name: str) -> str:
    """The usual spelling of a known algorithm ("md5-sess" -> "MD5-sess"); others as given."""
    return _ALGORITHMS.get(name.upper(), name)


def _hash_name(algorithm: str) -> str:
    base = _canonical_algorithm(algorithm).removesuffix("-sess")
    if base not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return _HASHES[base]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_digest(value: str) -> dict[str, str]:
    """The parameters of a `Digest k=v, k="v"` header value; names lowercased, values unquoted."""
    m = _SCHEME.match(value)
    if m is None or m.group(1).lower() != "digest":
        raise ValueError(f"not a Digest header: {value[:40]!r}")
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        p = _AUTH_PARAM.match(value, pos)
        if p is None:
            if value[pos:].strip(" \t,"):
                raise ValueError(f"bad digest parameters {value[pos:pos + 40]!r}")
            break
        name, quoted, token = p.groups()
        params[name.lower()] = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else token
        pos = p.end()
    return params


def _response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str,
    cnonce: str | None,
) -> str:
    """The request-digest of RFC 2617 3.2.2.1 (qop=auth or none) with RFC 7616's hashes."""
    hash_name = _hash_name(algorithm)

    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode("utf-8")).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    if _canonical_algorithm(algorithm).endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass
class Challenge:
    """A Digest challenge from WWW-Authenticate or Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)  # lowercased: ["auth", "auth-int"]
    opaque: str | None = None
    stale: bool = False  # the nonce expired but the credentials were right: retry, don't ask

    @classmethod
    def parse(cls, header_value: str) -> Challenge:
        """Parse one challenge; raises ValueError if it is not Digest or lacks realm or nonce."""
        params = _parse_digest(header_value)
        if "realm" not in params or "nonce" not in params:
            raise ValueError("digest challenge without realm or nonce")
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=[q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()],
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )


def authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization (or Proxy-Authorization) value answering `challenge` for a request.

    `uri` is the Request-URI exactly as written in the request line. qop=auth is used when the
    challenge offers it; a challenge offering only auth-int (which would hash the body) raises
    ValueError, as does an unsupported algorithm. `nc` counts the requests made with one nonce.
    """
    qop = "auth" if "auth" in challenge.qop else None
    if challenge.qop and qop is None:
        raise ValueError(f"challenge offers qop {challenge.qop} but not auth")
    if cnonce is None and (qop is not None or _canonical_algorithm(challenge.algorithm).endswith("-sess")):
        cnonce = secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = _response(
        challenge.algorithm, username, challenge.realm, password, challenge.nonce, method, uri, qop, nc_text, cnonce
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f'response="{response}"',
        f"algorithm={challenge.algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)


class DigestServer:
    """Challenges requests and checks the answers, keeping no per-nonce state.

    A nonce is 8 bytes of millisecond timestamp and 8 random bytes, followed by an HMAC of
    them under a key made at start-up; `check` accepts it while it is younger than
    `nonce_ttl_s`. Restarting the process invalidates outstanding nonces, which only costs a
    caller one more challenge. `clock` is for tests.
    """

    def __init__(
        self,
        realm: str,
        credentials: dict[str, str],
        nonce_ttl_s: float = 300,
        *,
        algorithm: str = "MD5",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.realm = realm
        self.credentials = dict(credentials)
        self.nonce_ttl_s = nonce_ttl_s
        self.algorithm = _canonical_algorithm(algorithm)
        _hash_name(self.algorithm)  # refuse an unsupported algorithm now, not at the first call
        self._clock = clock
        self._key = secrets.token_bytes(32)

    def _sign(self, stamp: bytes) -> bytes:
        return hmac.new(self._key, stamp, hashlib.sha256).digest()[:16]

    def _nonce(self) -> str:
        stamp = int(self._clock() * 1000).to_bytes(8, "big") + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(stamp + self._sign(stamp)).decode("ascii").rstrip("=")

    def _nonce_is_fresh(self, nonce: str) -> bool:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:  # binascii.Error, or non-ASCII text
            return False
        if len(raw) != 32 or not hmac.compare_digest(raw[16:], self._sign(raw[:16])):
            return False
        age_s = self._clock() - int.from_bytes(raw[:8], "big") / 1000
        return 0 <= age_s <= self.nonce_ttl_s

    def challenge(self) -> str:
        """A WWW-Authenticate (or Proxy-Authenticate) value with a fresh nonce."""
        return f'Digest realm={_quote(self.realm)}, nonce="{self._nonce()}", algorithm={self.algorithm}, qop="auth"'

    def check(self, method: str, authorization_value: str, *, request_uri: str | None = None) -> str | None:
        """The authenticated username, or None for anything else: a wrong password, an unknown
        user, another realm or algorithm, a forged or expired nonce, a malformed header. With
        `request_uri`, the digest must also be for that URI, so it cannot be replayed to
        another target."""
        try:
            params = _parse_digest(authorization_value)
        except ValueError:
            return None
        username, nonce, uri, response = (params.get(k) for k in ("username", "nonce", "uri", "response"))
        nc, cnonce = params.get("nc"), params.get("cnonce")
        if username is None or nonce is None or uri is None or response is None or nc is None or cnonce is None:
            return None
        password = self.credentials.get(username)
        if (
            password is None
            or params.get("realm") != self.realm
            or _canonical_algorithm(params.get("algorithm", "MD5")) != self.algorithm
            or params.get("qop", "").lower() != "auth"  # we offer qop=auth, so it is required
            or not _NC.fullmatch(nc)
            or (request_uri is not None and uri != request_uri)
            or not self._nonce_is_fresh(nonce)
        ):
            return None
        expected = _response(self.algorithm, username, self.realm, password, nonce, method, uri, "auth", nc, cnonce)
        return username if hmac.compare_digest(expected.encode(), response.lower().encode("utf-8")) else None
