"""SIP dialogs (RFC 3261 section 12), sans-IO: the state two user agents share once a call is set up,
and how requests inside it are built and checked.

A dialog is named by Call-ID and the two tags. It remembers the remote target (the peer's Contact),
the route set (Record-Route, reversed for the caller side), and both CSeq counters. Requests inside
it are routed through the proxies that asked to stay on the path: with loose routers (`;lr`) the
Request-URI is the remote target and the Route headers carry the set; a strict router gets the
Request-URI itself (12.2.1.1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .address import NameAddress, SipUri
from .message import SipRequest, SipResponse, new_branch


class DialogError(ValueError):
    """A request that does not belong in the dialog (CSeq going back): answered 500 (12.2.2)."""


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddress  # our From in requests we send (tag included)
    remote: NameAddress  # our To in requests we send (tag included)
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)  # Route header values, in order
    local_seq: int = field(default_factory=lambda: random.randint(1, 2**16))
    remote_seq: int | None = None
    local_contact: str = ""
    transport: str = "udp"

    @property
    def id(self) -> tuple[str, str, str]:
        return self.call_id, self.local_tag, self.remote_tag

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str, local_contact: str, transport: str = "udp") -> "Dialog":
        """We answered `request` (an INVITE, or a SUBSCRIBE/REFER) with a 2xx or 1xx carrying `local_tag`."""
        remote = request.from_addr
        local = request.to_addr.with_tag(local_tag)
        contact = request.contact
        if contact is None:
            raise DialogError("request has no Contact")
        return cls(call_id=request.call_id or "", local_tag=local_tag, remote_tag=remote.tag or "",
                   local=local, remote=remote, remote_target=contact.uri,
                   route_set=list(request.headers.get_all("Record-Route")),
                   local_seq=random.randint(1, 2**16), remote_seq=request.cseq[0],
                   local_contact=local_contact, transport=transport)

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse, local_contact: str, transport: str = "udp") -> "Dialog":
        """Our `request` was answered with `response` (1xx with a To tag, or 2xx)."""
        contact = response.contact
        if contact is None:
            raise DialogError("response has no Contact")
        return cls(call_id=request.call_id or "", local_tag=request.from_addr.tag or "",
                   remote_tag=response.to_addr.tag or "", local=request.from_addr, remote=response.to_addr,
                   remote_target=contact.uri,
                   route_set=list(reversed(response.headers.get_all("Record-Route"))),
                   local_seq=request.cseq[0], remote_seq=None, local_contact=local_contact, transport=transport)

    # -- requests we send ---------------------------------------------------------------------
    def next_request(self, method: str, via_host: str, via_port: int, *, body: bytes = b"",
                     content_type: str | None = None, extra: list[tuple[str, str]] | None = None,
                     cseq: int | None = None) -> SipRequest:
        """A request inside the dialog. ACK (for a 2xx) and CANCEL reuse the INVITE's CSeq number
        (`cseq`); everything else takes the next one."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._route()
        req = SipRequest(method, uri)
        req.headers.add("Via", f"SIP/2.0/{self.transport.upper()} {via_host}:{via_port};branch={new_branch()};rport")
        for route in routes:
            req.headers.add("Route", route)
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", str(self.local))
        req.headers.add("To", str(self.remote))
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{cseq} {method}")
        if self.local_contact and method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            req.headers.add("Contact", self.local_contact)
        for name, value in extra or ():
            req.headers.add(name, value)
        if body:
            req.headers.add("Content-Type", content_type or "application/sdp")
        req.body = body
        return req

    def _route(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return str(self.remote_target), []
        first = NameAddress.parse(self.route_set[0]).uri
        if "lr" in first.params:
            return str(self.remote_target), list(self.route_set)
        # strict router: it gets the Request-URI, the remote target goes last in the Route set
        return str(first), [*self.route_set[1:], f"<{self.remote_target}>"]

    def destination(self) -> tuple[str, int]:
        """Where requests in the dialog go: the first route, else the remote target (RFC 3263 in
        its simplest form: hosts are addresses or names the resolver knows)."""
        uri = NameAddress.parse(self.route_set[0]).uri if self.route_set else self.remote_target
        return uri.host_port(5061 if uri.scheme == "sips" else 5060)

    # -- requests we receive ------------------------------------------------------------------
    def check_request(self, request: SipRequest) -> None:
        """Raise DialogError for a CSeq lower than the last one (an old or forged request)."""
        seq = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return
        if self.remote_seq is not None and seq < self.remote_seq:
            raise DialogError(f"CSeq {seq} lower than {self.remote_seq}")
        self.remote_seq = seq
        contact = request.contact
        if request.method in ("INVITE", "UPDATE") and contact is not None:
            self.remote_target = contact.uri  # target refresh (12.2.2)
