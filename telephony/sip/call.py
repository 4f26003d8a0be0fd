"""One phone call over SIP: the INVITE dialog and its RTP stream.

The call answers (200 with the SDP answer, resent until the ACK comes, RFC 3261 13.3.1.4), follows
re-INVITEs (hold and unhold change the media direction), takes key presses from RFC 4733 events and
SIP INFO, ends with BYE either way, and hands the caller on with a blind transfer (REFER, following
the NOTIFY progress, RFC 3515) or, when the peer refuses REFER, by bridging: the user agent calls the
target and relays audio between the two calls (B2BUA).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Protocol

from telephony.rtp.sdp import SdpError, SdpSession
from telephony.rtp.stream import RtpStream

from .dialog import Dialog, DialogError
from .endpoint import SipEndpoint
from .message import SipRequest, SipResponse, make_response
from .transaction import T1, T2, TIMEOUT, ServerTransaction

log = logging.getLogger(__name__)

# An answered call's ACK comes one round trip after our 200 (a few more over lossy UDP: the 200 is
# resent at 0.5, 1.5, 3.5 s). Waiting the full 64*T1 (32 s) that RFC 3261 allows held the slot of
# a caller who never ACKs (a flood of INVITEs) that long; the agent has not spoken yet, so nothing
# is lost by giving up sooner.
ACK_TIMEOUT_S = 5.0

# SIP INFO bodies that carry a key press
_DTMF_RELAY = re.compile(r"^\s*Signal\s*=\s*([0-9A-Da-d*#])\s*$", re.M)


@dataclass
class KeyPress:
    digit: str
    via: str  # "rfc4733" or "info"


@dataclass
class TransferOutcome:
    ok: bool
    status: str  # completed, busy, no_answer, rejected, refused, failed
    method: str = "refer"  # "refer" or "bridge"
    sip_status: int | None = None


def failure_outcome(status: int | None) -> str:
    """A SIP final status as what a call-center engineer calls it."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487) or status is None:
        return "no_answer"
    return "rejected"


class CallOwner(Protocol):
    """What a call needs of the user agent that owns it (ua.UserAgent). Written out here so that
    the call does not import the user agent, which imports the call: the dependency runs ua -> call."""

    endpoint: SipEndpoint

    def capabilities(self) -> list[tuple[str, str]]: ...

    def via_host_port(self, transport: str) -> tuple[str, int]: ...

    def forget(self, call: "SipCall") -> None:
        """The call has ended: no more requests are routed to it."""


@dataclass
class SipCall:
    ua: CallOwner
    dialog: Dialog | None
    rtp: RtpStream
    sdp: SdpSession
    direction: str  # "inbound" | "outbound"
    transport: str = "udp"
    remote: str = ""  # the peer's From (inbound) or To (outbound), as written
    source: tuple[str, int] | None = None  # where the peer's last INVITE came from (our 2xx goes back there)
    ack_timeout_s: float = ACK_TIMEOUT_S  # no ACK for our 200 to the INVITE by then: the call is ended
    invite: SipRequest | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None
    keys: asyncio.Queue = field(default_factory=asyncio.Queue)
    media_started: bool = False
    bridged_to: "SipCall | None" = None
    _ack: asyncio.Event = field(default_factory=asyncio.Event)
    _invite_txn: ServerTransaction | None = None
    _pending_offer: bool = False  # we offered in the 200 (the INVITE had none): the ACK answers
    _refer: asyncio.Queue | None = None  # NOTIFY sipfrag statuses while a REFER is under way
    _reinvite_busy: bool = False
    _no_ack_bye: asyncio.Future | None = None

    @property
    def call_id(self) -> str:
        return self.dialog.call_id if self.dialog else (self.invite.call_id if self.invite else "")

    @property
    def active(self) -> bool:
        return self.dialog is not None and not self.ended.is_set()

    # -- answering ----------------------------------------------------------------------------
    async def answer(self) -> bool:
        """Inbound: 200 OK with our SDP, resent until the ACK; False (and the call ended) if it never
        comes."""
        assert self.invite is not None and self._invite_txn is not None and self.dialog is not None
        if self.invite.body:
            try:
                body, media = self.sdp.answer(self.invite.body.decode("utf-8", "replace"))
            except SdpError as exc:
                self.reject(488, str(exc)[:80])
                return False
            self.rtp.start(media)
            self.media_started = True
        else:  # late offer: ours goes in the 200, the answer comes in the ACK
            body = self.sdp.offer()
            self._pending_offer = True
        ok = self._ok_for(self.invite, body.encode())
        self.ua.endpoint.respond(self._invite_txn, ok)
        self._invite_txn = None
        if not await self._resend_until_ack(ok, self.ack_timeout_s):
            log.warning("call %s: no ACK for our 200 within %.1f s: ending it", self.call_id, self.ack_timeout_s)
            # bye() ends the call at its first step; the answer to the BYE (up to 32 s from a sender
            # that never answers) is not waited for
            self._no_ack_bye = asyncio.ensure_future(self.bye("no_ack"))
            await asyncio.sleep(0)
            return False
        return True

    def reject(self, status: int, reason: str | None = None) -> None:
        if self._invite_txn is not None and self.invite is not None:
            self.ua.endpoint.respond(self._invite_txn, make_response(self.invite, status, reason,
                                                                     to_tag=self.dialog.local_tag if self.dialog else None))
            self._invite_txn = None
        self._finish(f"rejected_{status}")

    def _ok_for(self, request: SipRequest, body: bytes) -> SipResponse:
        assert self.dialog is not None
        ok = make_response(request, 200, to_tag=self.dialog.local_tag, body=body, content_type="application/sdp",
                           headers=[("Contact", self.dialog.local_contact), *self.ua.capabilities()])
        return ok

    async def _resend_until_ack(self, response: SipResponse, timeout_s: float = TIMEOUT) -> bool:
        self._ack.clear()
        dest = self.source
        interval, waited = T1, 0.0
        while waited < timeout_s:
            try:
                await asyncio.wait_for(self._ack.wait(), min(interval, timeout_s - waited))
                return True
            except asyncio.TimeoutError:
                waited += min(interval, timeout_s - waited)
                if self.ended.is_set():
                    return False
                if self.transport == "udp":  # over TCP the 2xx is not resent, only waited for
                    self.ua.endpoint.send(response, dest, self.transport)
                interval = min(interval * 2, T2)
        return False

    # -- requests inside the dialog -----------------------------------------------------------
    def on_request(self, request: SipRequest, txn: ServerTransaction | None, source) -> None:
        endpoint = self.ua.endpoint
        method = request.method
        if method == "ACK":
            if self._pending_offer and request.body:
                try:
                    self.rtp.start(self.sdp.accept_answer(request.body.decode("utf-8", "replace")))
                    self.media_started = True
                except SdpError as exc:
                    log.warning("call %s: unusable SDP answer in ACK (%s): ending the call", self.call_id, exc)
                    asyncio.get_running_loop().create_task(self.bye("bad_sdp"))
                self._pending_offer = False
            self._ack.set()
            return
        assert txn is not None and self.dialog is not None
        try:
            self.dialog.check_request(request)
        except DialogError as exc:
            endpoint.respond(txn, make_response(request, 500, str(exc)[:60]))
            return
        if method == "BYE":
            endpoint.respond(txn, make_response(request, 200))
            self._finish("remote_bye")
            if self.bridged_to is not None:
                asyncio.get_running_loop().create_task(self.bridged_to.bye("bridge_peer_left"))
        elif method == "INVITE":
            self._on_reinvite(request, txn)
        elif method == "INFO":
            self._on_info(request, txn)
        elif method == "NOTIFY":
            self._on_notify(request, txn)
        elif method in ("OPTIONS", "UPDATE") and not request.body:
            endpoint.respond(txn, make_response(request, 200, headers=self.ua.capabilities()))
        elif method == "REFER":
            endpoint.respond(txn, make_response(request, 603, "Decline"))  # nobody moves the agent
        else:
            endpoint.respond(txn, make_response(request, 405, headers=self.ua.capabilities()))

    def _on_reinvite(self, request: SipRequest, txn: ServerTransaction) -> None:
        """Hold, unhold, a new address or codec: answer from the same SDP session and follow it."""
        if self._reinvite_busy:
            self.ua.endpoint.respond(txn, make_response(request, 491, "Request Pending"))
            return
        if not request.body:
            body = self.sdp.offer()
            self._pending_offer = True
        else:
            try:
                body, media = self.sdp.answer(request.body.decode("utf-8", "replace"))
            except SdpError as exc:
                self.ua.endpoint.respond(txn, make_response(request, 488, str(exc)[:60]))
                return
            self.rtp.start(media)
            log.info("call %s: re-INVITE: remote %s%s", self.call_id, media.remote_direction,
                     " (on hold)" if media.remote_direction in ("sendonly", "inactive") else "")
        ok = self._ok_for(request, body.encode())
        self.ua.endpoint.respond(txn, ok)
        self.source = txn.source
        self._reinvite_busy = True

        async def wait_ack() -> None:
            try:
                await self._resend_until_ack(ok)
            finally:
                self._reinvite_busy = False

        asyncio.get_running_loop().create_task(wait_ack())

    def _on_info(self, request: SipRequest, txn: ServerTransaction) -> None:
        kind = request.content_type or ""
        text = request.body.decode("utf-8", "replace")
        digit = None
        if kind == "application/dtmf-relay":
            m = _DTMF_RELAY.search(text)
            digit = m.group(1).upper() if m else None
        elif kind == "application/dtmf":
            digit = text.strip()[:1].upper() or None
        if digit is None or digit not in "0123456789*#ABCD":
            self.ua.endpoint.respond(txn, make_response(request, 415 if kind not in (
                "application/dtmf-relay", "application/dtmf") else 400))
            return
        self.ua.endpoint.respond(txn, make_response(request, 200))
        self.keys.put_nowait(KeyPress(digit, "info"))

    def _on_notify(self, request: SipRequest, txn: ServerTransaction) -> None:
        self.ua.endpoint.respond(txn, make_response(request, 200))
        if self._refer is None or not (request.header("Event") or "").lower().startswith("refer"):
            return
        m = re.match(r"\s*SIP/2\.0\s+(\d{3})", request.body.decode("utf-8", "replace"))
        terminated = (request.header("Subscription-State") or "").lower().startswith("terminated")
        self._refer.put_nowait((int(m.group(1)) if m else None, terminated))

    async def watch_media(self, every_s: float = 0.5) -> None:
        """A caller who vanishes without a BYE (phone unplugged, NAT gone) is noticed by the RTP
        timeout, whether or not anything is reading the audio."""
        while self.active:
            await asyncio.sleep(every_s)
            if self.active and self.rtp.silent_too_long():
                log.info("call %s: no RTP for %.0f s: hanging up", self.call_id, self.rtp.timeout_s)
                await self.bye("rtp_timeout")

    # -- ending -------------------------------------------------------------------------------
    async def bye(self, reason: str = "agent_bye") -> None:
        if not self.active:
            self._finish(self.end_reason or reason)
            return
        assert self.dialog is not None
        request = self.dialog.next_request("BYE", *self.ua.via_host_port(self.transport))
        self._finish(reason)
        try:
            await self.ua.endpoint.request(request, self.dialog.destination(), self.transport)
        except Exception as exc:  # gone already: the call is over either way
            log.info("call %s: BYE not answered (%s)", self.call_id, exc)

    def _finish(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.ended.set()
        self.ua.forget(self)
        asyncio.get_running_loop().create_task(self.rtp.close())

    # -- transfer -----------------------------------------------------------------------------
    async def refer(self, target: str, notify_timeout_s: float = 30.0) -> TransferOutcome:
        """Blind transfer: ask the peer to call `target` itself. Refusal (405, 501, 603...) comes
        back as status "refused_by_peer" so that the caller can fall back to bridging."""
        if not self.active:
            return TransferOutcome(False, "failed")
        assert self.dialog is not None
        local = self.dialog.local.uri
        request = self.dialog.next_request("REFER", *self.ua.via_host_port(self.transport),
                                           extra=[("Refer-To", f"<{target}>"), ("Referred-By", f"<{local}>")])
        self._refer = asyncio.Queue()
        try:
            response = await self.ua.endpoint.request(request, self.dialog.destination(), self.transport)
            if response.status >= 300:
                return TransferOutcome(False, "refused_by_peer", sip_status=response.status)
            deadline = asyncio.get_running_loop().time() + notify_timeout_s
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return TransferOutcome(False, "no_answer")
                try:
                    status, terminated = await asyncio.wait_for(self._refer.get(), left)
                except asyncio.TimeoutError:
                    return TransferOutcome(False, "no_answer")
                if status is not None and 200 <= status < 300:
                    await self.bye("transferred")
                    return TransferOutcome(True, "completed", sip_status=status)
                if status is not None and status >= 300:
                    return TransferOutcome(False, failure_outcome(status), sip_status=status)
                if terminated:
                    return TransferOutcome(False, "failed", sip_status=status)
        except Exception as exc:
            log.warning("call %s: REFER failed: %s", self.call_id, exc)
            return TransferOutcome(False, "failed")
        finally:
            self._refer = None
