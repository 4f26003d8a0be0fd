"""Registration with a registrar (RFC 3261 section 10): REGISTER with digest authentication when
challenged, refreshed before it expires, removed (Expires: 0) on shutdown. A failed refresh is
retried with backoff; the agent keeps answering calls that reach it directly meanwhile."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .address import AddressError, NameAddress, SipUri
from .auth import Challenge, authorization
from .endpoint import SipEndpoint, SipTimeout
from .message import SipRequest, SipResponse, new_call_id, new_tag

log = logging.getLogger(__name__)


class RegistrationFailed(Exception):
    def __init__(self, status: int | None, reason: str):
        super().__init__(f"registration failed: {status} {reason}")
        self.status = status


@dataclass
class Registration:
    registrar: str  # sip:host:port of the registrar
    aor: str  # the address of record, sip:agent@domain
    username: str | None = None
    password: str | None = None
    expires_s: int = 300
    transport: str = "udp"


class Registrar:
    """Keeps one address of record registered to this endpoint's Contact."""

    def __init__(self, endpoint: SipEndpoint, registration: Registration):
        self.endpoint = endpoint
        self.reg = registration
        self.registered = asyncio.Event()
        self.expires_s: int | None = None  # what the registrar granted
        self.last_status: int | None = None
        self.refreshes = 0
        self._call_id = new_call_id(endpoint.host)
        self._tag = new_tag()
        self._cseq = 0
        self._task: asyncio.Task | None = None

    async def register(self, expires_s: int | None = None) -> SipResponse:
        """One REGISTER (answering one digest challenge); returns the final response, raises
        RegistrationFailed for anything but 2xx."""
        expires = self.reg.expires_s if expires_s is None else expires_s
        registrar = SipUri.parse(self.reg.registrar)
        aor = SipUri.parse(self.reg.aor)
        auth: tuple[str, str] | None = None
        for _ in range(2):
            self._cseq += 1
            request = SipRequest("REGISTER", str(SipUri(scheme=registrar.scheme, host=registrar.host, port=registrar.port)))
            request.headers.add("Via", self.endpoint.via(self.reg.transport))
            request.headers.add("Max-Forwards", "70")
            request.headers.add("From", f"<{aor}>;tag={self._tag}")
            request.headers.add("To", f"<{aor}>")
            request.headers.add("Call-ID", self._call_id)
            request.headers.add("CSeq", f"{self._cseq} REGISTER")
            request.headers.add("Contact", self.endpoint.contact(self.reg.transport, aor.user))
            request.headers.add("Expires", str(expires))
            if auth:
                request.headers.add(*auth)
            try:
                response = await self.endpoint.request(request, registrar.host_port(), self.reg.transport)
            except SipTimeout as exc:
                raise RegistrationFailed(None, "no response from the registrar") from exc
            self.last_status = response.status
            if response.status in (401, 407) and auth is None and self.reg.username:
                header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                challenge = Challenge.parse(response.headers.get(header) or "")
                value = authorization(challenge, "REGISTER", request.uri, self.reg.username, self.reg.password or "")
                auth = ("Authorization" if response.status == 401 else "Proxy-Authorization", value)
                continue
            break
        if not 200 <= response.status < 300:
            raise RegistrationFailed(response.status, response.reason)
        self.expires_s = _granted_expires(response, expires)
        return response

    def start(self) -> None:
        """Register now and keep the registration fresh in the background."""
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="sip-register")

    async def _keep(self) -> None:
        backoff = 5.0
        while True:
            try:
                await self.register()
                self.registered.set()
                backoff = 5.0
                self.refreshes += 1
                # refresh at half the granted time, at least a few seconds ahead of expiry
                wait = max(1.0, min((self.expires_s or self.reg.expires_s) / 2, (self.expires_s or 0) - 5))
                log.info("registered %s at %s for %s s", self.reg.aor, self.reg.registrar, self.expires_s)
            except RegistrationFailed as exc:
                self.registered.clear()
                log.warning("%s; retrying in %.0f s", exc, backoff)
                wait, backoff = backoff, min(backoff * 2, 300.0)
            await asyncio.sleep(wait)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.registered.is_set():
            try:
                await asyncio.wait_for(self.register(expires_s=0), 5.0)
            except (RegistrationFailed, asyncio.TimeoutError) as exc:
                log.info("unregister: %s", exc)
            self.registered.clear()


def _granted_expires(response: SipResponse, asked: int) -> int:
    """The registrar may shorten the time: its Contact's expires, else its Expires header."""
    for value in response.headers.get_all("Contact"):
        try:
            expires = NameAddress.parse(value).params.get("expires")
            if expires is not None:
                return int(expires.strip('"'))
        except (AddressError, ValueError):
            pass
    try:
        return int(response.headers.get("Expires") or asked)
    except ValueError:
        return asked
