"""The SIP user agent: answers and places calls, registers, transfers. The transaction user of
endpoint.py, and the owner of every SipCall.

Inbound: INVITE -> 100 Trying -> (503 Service Unavailable with Retry-After at capacity or while not
taking calls, so that a dispatcher in front of many workers tries the next one; 488 for an SDP it cannot
answer) -> 200 with the SDP answer -> ACK -> the `on_call` handler runs the call.
Outbound (`invite`): INVITE with our offer, digest authentication when challenged, CANCEL after the
ring timeout; the final status becomes an outcome: answered, busy, no_answer, rejected, failed.
Out of dialog: OPTIONS is answered (keepalive pings from proxies and trunks; 503 while not taking
calls, so that a dispatcher's health probe sends calls elsewhere), other methods get 405 or 501, requests for a dialog we do not have get 481.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from telephony.rtp.sdp import SdpError, SdpSession
from telephony.rtp.stream import RtpStream

from .address import AddressError, NameAddress, SipUri
from .auth import Challenge, authorization
from .call import ACK_TIMEOUT_S, SipCall, failure_outcome
from .connections import TcpLimits
from .dialog import Dialog, DialogError
from .endpoint import SipEndpoint, SipTimeout
from .message import SipRequest, SipResponse, make_response, new_call_id, new_tag
from .transaction import ServerTransaction

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER"
ABANDONED_INVITE = "sip-abandoned-invite"  # the task that watches an outbound INVITE given up on
KNOWN_METHODS = {"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "PRACK", "UPDATE"}  # understood, not served
SHUTDOWN_BYE_WAIT_S = 2.0  # how long closing waits for the answers to its BYEs
# Retry-After (s) of the 503 at capacity: soon, calls end all the time. A dispatcher (Kamailio) takes the
# 503 as "try the next worker"; a caller without one may retry after it.
FULL_RETRY_AFTER_S = 2
# The caller's address as a trusted proxy saw it, written by that proxy (docker/kamailio/kamailio.cfg,
# which removes any copy a caller sent): the key of the per-caller cap of unACKed INVITEs.
SOURCE_HEADER = "X-Voiceagent-Source"


@dataclass
class Credentials:
    username: str
    password: str


class CallFailed(Exception):
    def __init__(self, outcome: str, status: int | None = None, reason: str = ""):
        super().__init__(f"{outcome}" + (f" ({status} {reason})" if status else ""))
        self.outcome = outcome
        self.status = status


class UserAgent:
    def __init__(self, host: str = "127.0.0.1", port: int = 5060, *, user: str = "agent",
                 transports: tuple[str, ...] = ("udp", "tcp"), max_calls: int = 8,
                 on_call: Callable[[SipCall], Awaitable[None]] | None = None,
                 rtp_host: str | None = None, rtp_ports: tuple[int, int] = (10000, 20000),
                 transfer_allow: tuple[str, ...] = (), credentials: Credentials | None = None,
                 outbound_proxy: str | None = None, rtp_timeout_s: float = 30.0, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
                 ack_timeout_s: float = ACK_TIMEOUT_S, max_unacked_per_source: int = 2,
                 tcp_limits: TcpLimits | None = None, trusted_proxies: tuple[str, ...] = ()):
        """`ack_timeout_s`: an answered inbound call whose ACK has not come by then is hung up, its
        slot freed; `max_unacked_per_source`: answered, not yet ACKed inbound calls from one IP
        address at once (more get 503), so that one sender cannot hold every slot that way.
        `trusted_proxies`: addresses or networks ("10.0.0.5", "10.0.0.0/24") of proxies in front of
        us (a Kamailio dispatcher): every call comes from their one address, so for INVITEs from them
        the cap counts the caller's address the proxy wrote in its X-Voiceagent-Source header instead."""
        self.endpoint = SipEndpoint(self, host, port, transports, user, tcp_limits=tcp_limits)
        self.user = user
        self.max_calls = max_calls
        self.on_call = on_call
        self.rtp_host = rtp_host or host
        self.rtp_ports = rtp_ports
        self.transfer_allow = transfer_allow
        self.credentials = credentials
        self.outbound_proxy = SipUri.parse(outbound_proxy) if outbound_proxy else None
        self.rtp_timeout_s = rtp_timeout_s
        self.codecs = codecs
        self.ack_timeout_s = ack_timeout_s
        self.max_unacked_per_source = max_unacked_per_source
        self.trusted_proxies = parse_networks(trusted_proxies, "[sip] trusted_proxies")
        self.accepting = True
        self.calls: dict[tuple[str, str], SipCall] = {}  # (Call-ID, our tag)
        self._opening = 0  # INVITEs taken, their calls not in `calls` yet (the media port is being opened)
        self._unacked: dict[str, int] = {}  # source IP -> its INVITEs taken and not ACKed yet
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"inbound": 0, "outbound": 0, "busy": 0, "rejected": 0, "unacked_refused": 0, "no_ack": 0}

    async def start(self) -> None:
        await self.endpoint.start()

    async def close(self) -> None:
        """Stop taking calls, end those in progress with BYE, close the sockets."""
        self.accepting = False
        byes = [asyncio.ensure_future(call.bye("shutdown")) for call in list(self.calls.values())]
        if byes:
            # Each call is over once its BYE is sent (bye() ends it first). A caller who is gone
            # never answers, and waiting for that BYE's transaction held the shutdown for its 32 s
            # timeout (timer F): wait a little, then let the endpoint's closing end the rest.
            await asyncio.wait(byes, timeout=SHUTDOWN_BYE_WAIT_S)
        for task in self._tasks:
            if task.get_name() == ABANDONED_INVITE:  # nobody is waiting for those any more
                task.cancel()
        if self._tasks:  # let the calls' handlers finish their records before anything is cancelled
            await asyncio.wait(list(self._tasks), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        await self.endpoint.close()
        for bye in byes:
            bye.cancel()
        await asyncio.gather(*byes, return_exceptions=True)

    @property
    def port(self) -> int:
        return self.endpoint.port

    def capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp, application/dtmf-relay, message/sipfrag"),
                ("Supported", "replaces")]

    def via_host_port(self, transport: str) -> tuple[str, int]:
        return self.endpoint._uri_host(), self.endpoint.port

    def forget(self, call: SipCall) -> None:
        if call.dialog is not None:
            self.calls.pop((call.dialog.call_id, call.dialog.local_tag), None)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def connections_in_use(self) -> set:
        """The TCP connections live calls use: the one their INVITE came over, the one their
        in-dialog requests go to."""
        used = set()
        for call in self.calls.values():
            if call.transport == "tcp" and call.active:
                used.add(call.source)
                used.add(call.dialog.destination())
        return used

    def transfer_allowed(self, target: str) -> bool:
        """The toll-fraud guard: transfers go only to targets matching the allow-list (glob patterns
        over the whole URI, e.g. "sip:*@pbx.example.com" or "sip:queue-*@10.0.0.5:5060")."""
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.transfer_allow)

    # -- the transaction user ------------------------------------------------------------------
    def on_request(self, request: SipRequest, txn: ServerTransaction | None, transport: str, source) -> None:
        to_tag = request.to_addr.tag
        if to_tag:  # inside a dialog
            call = self.calls.get((request.call_id or "", to_tag))
            if call is not None and call.dialog is not None and (request.from_addr.tag or "") != call.dialog.remote_tag:
                # A dialog is named by the Call-ID and both tags (RFC 3261 12): the Call-ID and our tag
                # alone are in every response we sent, so without the peer's tag a BYE from anyone who
                # saw them (a forked leg, a stale or forged request) would end the call.
                call = None
            if call is None:
                if txn is not None:
                    self.endpoint.respond(txn, make_response(request, 481, "Call/Transaction Does Not Exist"))
                return
            call.on_request(request, txn, source)
            return
        if txn is None:
            return  # an ACK outside any dialog: nothing to do
        method = request.method
        if method == "INVITE":
            self._on_invite(request, txn, transport, source)
        elif method == "OPTIONS":
            if not self.accepting:
                # a dispatcher's health probe: loading the models or shutting down, send calls elsewhere
                self.endpoint.respond(txn, make_response(request, 503, "Service Unavailable",
                                                         headers=[("Retry-After", "5"), *self.capabilities()]))
            else:
                self.endpoint.respond(txn, make_response(request, 200, headers=self.capabilities()))
        elif method in ("BYE", "INFO", "NOTIFY", "REFER"):
            self.endpoint.respond(txn, make_response(request, 481, "Call/Transaction Does Not Exist"))
        elif method in KNOWN_METHODS:
            self.endpoint.respond(txn, make_response(request, 405, headers=[("Allow", ALLOW)]))
        else:
            self.endpoint.respond(txn, make_response(request, 501, headers=[("Allow", ALLOW)]))

    def on_cancel(self, invite_txn: ServerTransaction) -> None:
        request = invite_txn.request
        for call in list(self.calls.values()):
            if call._invite_txn is invite_txn:
                call.reject(487, "Request Terminated")
                return
        self.endpoint.respond(invite_txn, make_response(request, 487, "Request Terminated", to_tag=new_tag()))

    def on_stray_response(self, response: SipResponse, transport: str, source) -> None:
        """A 2xx to an INVITE resent because our ACK was lost: ACK it again."""
        cseq = response.cseq
        if cseq is None or cseq[1] != "INVITE" or not 200 <= response.status < 300:
            return
        call = self.calls.get((response.call_id or "", response.from_addr.tag or ""))
        if call is not None and call.dialog is not None:
            ack = call.dialog.next_request("ACK", *self.via_host_port(call.transport), cseq=cseq[0])
            self.endpoint.send(ack, call.dialog.destination(), call.transport)

    # -- inbound calls ------------------------------------------------------------------------
    def _on_invite(self, request: SipRequest, txn: ServerTransaction, transport: str, source) -> None:
        if not self.accepting or self.on_call is None:
            self.endpoint.respond(txn, make_response(request, 503, "Service Unavailable", headers=[("Retry-After", "5")]))
            return
        if self._is_retransmission(request):
            return  # an INVITE we answered already (our 200 crossed it): the 200 is being resent anyway
        if len(self.calls) + self._opening >= self.max_calls:
            # 503, not 486: the caller is not busy, this worker is full; a proxy in front tries another
            self.stats["busy"] += 1
            self.endpoint.respond(txn, make_response(request, 503, "Service Unavailable",
                                                     headers=[("Retry-After", str(FULL_RETRY_AFTER_S))]))
            return
        host = self._unacked_key(request, source)
        if self._unacked.get(host, 0) >= self.max_unacked_per_source:
            self.stats["busy"] += 1
            self.stats["unacked_refused"] += 1
            log.warning("sip: INVITE from %s refused: %d answered calls of its still unacknowledged", host,
                        self._unacked[host])
            self.endpoint.respond(txn, make_response(request, 503, "Service Unavailable",
                                                     headers=[("Retry-After", str(FULL_RETRY_AFTER_S))]))
            return
        if request.body and (request.content_type or "application/sdp") != "application/sdp":
            self.endpoint.respond(txn, make_response(request, 415, headers=[("Accept", "application/sdp")]))
            return
        try:
            request.request_uri
            if request.contact is None:
                raise DialogError("no Contact")
        except (AddressError, DialogError, ValueError) as exc:
            self.endpoint.respond(txn, make_response(request, 400, f"Bad Request ({exc})"[:80]))
            return
        self.endpoint.respond(txn, make_response(request, 100))
        # counted from now, not once the call exists: INVITEs arriving together all meet the limits
        self._opening += 1
        self._unacked[host] = self._unacked.get(host, 0) + 1
        self.spawn(self._answer(request, txn, transport, source, host))

    def _unacked_key(self, request: SipRequest, source) -> str:
        """Whose INVITE this is, for the per-caller cap: the sending address, or for an INVITE relayed
        by a trusted proxy the caller's address that proxy wrote in X-Voiceagent-Source. Nothing a
        caller writes is believed: the header only from a trusted proxy (which drops a caller's copy),
        and never a Via's `received` (Kamailio keeps a caller's own when the Via names its real
        address, so a made-up one per INVITE would dodge the cap)."""
        host = source[0]
        if not self.trusted_proxies or not _in_networks(host, self.trusted_proxies):
            return host
        values = request.headers.get_all(SOURCE_HEADER)
        if len(values) != 1:
            # none: the proxy's own INVITE; several: a proxy that does not drop callers' copies.
            # Either way counted as the proxy's, the strict side.
            if values:
                log.warning("sip: INVITE from proxy %s with %d %s headers: counted as the proxy's", host,
                            len(values), SOURCE_HEADER)
            return host
        try:
            return str(ipaddress.ip_address(values[0].strip()))
        except ValueError:
            log.warning("sip: INVITE from proxy %s with %s %r, not an address: counted as the proxy's", host,
                        SOURCE_HEADER, values[0][:60])
            return host

    def _release_unacked(self, host: str) -> None:
        """An INVITE taken from `host` was ACKed, or its call is over."""
        left = self._unacked.get(host, 0) - 1
        if left > 0:
            self._unacked[host] = left
        else:
            self._unacked.pop(host, None)

    def _is_retransmission(self, request: SipRequest) -> bool:
        """RFC 3261 leaves the INVITE transaction once the 2xx is sent, so a late copy of the INVITE
        arrives as a new request; it must not become a second call (RFC 6026's problem)."""
        from_tag = request.from_addr.tag
        return any(call.invite is not None and call.direction == "inbound" and call.invite.call_id == request.call_id
                   and call.dialog is not None and call.dialog.remote_tag == from_tag
                   and call.invite.cseq == request.cseq for call in self.calls.values())

    async def _answer(self, request: SipRequest, txn: ServerTransaction, transport: str, source,
                      unacked_key: str) -> None:
        opening = True
        try:
            tag = new_tag()
            dialog = Dialog.as_uas(request, tag, self.endpoint.contact(transport), transport)
            try:
                rtp = await RtpStream.open(self.rtp_host, self.rtp_ports)
            except OSError:
                log.exception("no RTP port free")
                self.endpoint.respond(txn, make_response(request, 503, "No Media Port", to_tag=tag))
                return
            if txn.state.value != "proceeding":  # cancelled while the media port was being opened
                await rtp.close()
                return
            rtp.timeout_s = self.rtp_timeout_s
            call = SipCall(self, dialog, rtp, SdpSession(self.rtp_host, rtp.local_port, self.codecs), "inbound",
                           transport, remote=str(request.from_addr), invite=request, source=source,
                           ack_timeout_s=self.ack_timeout_s)
            call._invite_txn = txn
            self.calls[(dialog.call_id, tag)] = call
            self._opening -= 1
            opening = False
            self.stats["inbound"] += 1
            answered = await call.answer()
        finally:
            if opening:
                self._opening -= 1
            self._release_unacked(unacked_key)
        if answered:
            self.spawn(call.watch_media())
            try:
                await self.on_call(call)
            except Exception:
                log.exception("call %s: handler failed", call.call_id)
            finally:
                if call.active and call.bridged_to is None:
                    await call.bye("agent_bye")
        else:
            self.stats["no_ack"] += call.end_reason == "no_ack"
            await rtp.close()

    # -- outbound calls -----------------------------------------------------------------------
    async def invite(self, target: str, *, from_user: str | None = None, ring_timeout_s: float = 30.0,
                     transport: str | None = None, headers: list[tuple[str, str]] | None = None) -> SipCall:
        """Call `target` (a SIP URI). Returns the answered call, or raises CallFailed with the outcome
        (busy, no_answer, rejected, failed)."""
        uri = SipUri.parse(target)
        transport = transport or uri.transport or "udp"
        hop = self.outbound_proxy or uri
        dest = hop.host_port()
        rtp = await RtpStream.open(self.rtp_host, self.rtp_ports)
        rtp.timeout_s = self.rtp_timeout_s
        sdp = SdpSession(self.rtp_host, rtp.local_port, self.codecs)
        local = NameAddress(SipUri(user=from_user or self.user, host=self.endpoint._uri_host(),
                                   port=self.endpoint.port), params={"tag": new_tag()})
        call_id = new_call_id(self.endpoint.host)
        offer = sdp.offer().encode()
        cseq = 1
        authorized: list[tuple[str, str]] = []
        self.stats["outbound"] += 1
        try:
            while True:
                request = SipRequest("INVITE", str(uri))
                request.headers.add("Via", self.endpoint.via(transport))
                if self.outbound_proxy is not None:
                    request.headers.add("Route", f"<{self.outbound_proxy};lr>")
                request.headers.add("Max-Forwards", "70")
                request.headers.add("From", str(local))
                request.headers.add("To", f"<{uri}>")
                request.headers.add("Call-ID", call_id)
                request.headers.add("CSeq", f"{cseq} INVITE")
                request.headers.add("Contact", self.endpoint.contact(transport, local.uri.user))
                for name, value in [*self.capabilities(), *authorized, *(headers or [])]:
                    request.headers.add(name, value)
                request.headers.add("Content-Type", "application/sdp")
                request.body = offer
                response = await self._invite_once(request, dest, transport, ring_timeout_s)
                if response.status in (401, 407) and not authorized and self.credentials is not None:
                    authorized = [self._authorize(request, response)]
                    cseq += 1
                    continue
                break
            if response.status >= 300:
                raise CallFailed(failure_outcome(response.status), response.status, response.reason)
            dialog = Dialog.as_uac(request, response, request.headers.get("Contact") or "", transport)
            ack = dialog.next_request("ACK", *self.via_host_port(transport), cseq=cseq)
            self.endpoint.send(ack, dialog.destination(), transport)
            call = SipCall(self, dialog, rtp, sdp, "outbound", transport, remote=str(uri), invite=request)
            self.calls[(dialog.call_id, dialog.local_tag)] = call
            try:
                rtp.start(sdp.accept_answer(response.body.decode("utf-8", "replace")))
                call.media_started = True
                self.spawn(call.watch_media())
            except SdpError as exc:
                # the BYE goes on its own: a peer that answers with garbage may never answer it either,
                # and the dialler should not wait out its transaction timer (32 s)
                self.spawn(call.bye("bad_sdp"))
                raise CallFailed("failed", 488, str(exc)) from exc
            return call
        except SipTimeout as exc:
            await rtp.close()
            raise CallFailed("no_answer" if "INVITE" in str(exc) else "failed") from exc
        except CallFailed:
            await rtp.close()
            raise
        except (OSError, ConnectionError, DialogError) as exc:
            await rtp.close()
            raise CallFailed("failed", reason=str(exc)) from exc

    async def _invite_once(self, request: SipRequest, dest, transport: str, ring_timeout_s: float) -> SipResponse:
        """One INVITE transaction; CANCEL it when nobody answers in time (the 487 is the answer)."""
        ringing = asyncio.Event()
        task = asyncio.ensure_future(self.endpoint.request(request, dest, transport,
                                                           on_provisional=lambda r: ringing.set()))
        try:
            return await asyncio.wait_for(asyncio.shield(task), ring_timeout_s)
        except asyncio.TimeoutError:
            if not ringing.is_set():  # no provisional at all: CANCEL is not allowed (9.1); give up
                self.spawn(self._abandon(task, request, dest, transport, ringing)).set_name(ABANDONED_INVITE)
                raise SipTimeout("no answer to INVITE")
            cancel = _cancel_for(request)
            try:
                await self.endpoint.request(cancel, dest, transport)
                response = await asyncio.wait_for(task, 32.0)
            except (SipTimeout, asyncio.TimeoutError):
                raise SipTimeout("no answer to INVITE")
            if 200 <= response.status < 300:  # answered as we cancelled: take the call after all
                return response
            raise CallFailed("no_answer", response.status, response.reason)

    async def _abandon(self, task: asyncio.Future, request: SipRequest, dest, transport: str,
                       ringing: asyncio.Event) -> None:
        """An INVITE given up on before any answer goes on being retransmitted until timer B, so it
        may still be answered: CANCEL it if it starts ringing, and ACK then BYE a late 2xx, so that
        the callee is not left holding a call nobody is on."""
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, even if we are cancelled
        ring = asyncio.ensure_future(ringing.wait())
        try:
            await asyncio.wait({task, ring}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ring.cancel()
        if not task.done():
            try:
                await self.endpoint.request(_cancel_for(request), dest, transport)
            except SipTimeout:
                pass
        try:
            response = await task
        except (SipTimeout, asyncio.CancelledError):
            return
        if 200 <= response.status < 300:
            try:
                dialog = Dialog.as_uac(request, response, request.headers.get("Contact") or "", transport)
            except DialogError:
                return
            self.endpoint.send(dialog.next_request("ACK", *self.via_host_port(transport), cseq=request.cseq[0]),
                               dialog.destination(), transport)
            try:
                await self.endpoint.request(dialog.next_request("BYE", *self.via_host_port(transport)),
                                            dialog.destination(), transport)
            except SipTimeout:
                pass

    def _authorize(self, request: SipRequest, response: SipResponse) -> tuple[str, str]:
        assert self.credentials is not None
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        challenge = Challenge.parse(response.headers.get(header) or "")
        value = authorization(challenge, request.method, request.uri, self.credentials.username,
                              self.credentials.password)
        return ("Authorization" if response.status == 401 else "Proxy-Authorization"), value


def _cancel_for(request: SipRequest) -> SipRequest:
    """CANCEL of a pending INVITE (9.1): its Request-URI, top Via (same branch), Route, From, To,
    Call-ID, and CSeq number."""
    cancel = SipRequest("CANCEL", request.uri)
    cancel.headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        cancel.headers.add("Route", route)
    for name in ("Max-Forwards", "From", "To", "Call-ID"):
        cancel.headers.add(name, request.headers.get(name))
    cancel.headers.add("CSeq", f"{request.cseq[0]} CANCEL")
    return cancel


def parse_networks(entries, what: str) -> tuple:
    """IP addresses or networks ("10.0.0.5", "10.0.0.0/24", "::1") from a config list."""
    if isinstance(entries, str):
        raise ValueError(f"{what} must be a list of addresses, not the string {entries!r}")
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{what}: {entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
    return tuple(networks)


def _in_networks(host: str, networks: tuple) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)
