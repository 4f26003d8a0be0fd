"""SIP transactions (RFC 3261 section 17), sans-IO: messages and the time go in, actions come out.

A transaction is one request and the responses to it. Over UDP it owns the retransmissions; over
TCP it only times out. Each state machine here is fed with `now` (seconds, any monotonic clock) by
the caller and returns what to do: `Send` a message, hand a response or a request to the transaction
user (`Deliver`), or report that it failed (`Timeout`, `TransportFailed`). `next_deadline` says when
to call `tick` next. The asyncio layer (endpoint.py) owns the sockets and the clock.

    client INVITE:     Calling -1xx-> Proceeding -2xx-> Terminated (the TU ACKs a 2xx itself)
                          \\______ 3xx-6xx _____-> Completed (ACK sent here; timer D) -> Terminated
    client non-INVITE: Trying -1xx-> Proceeding -final-> Completed (timer K) -> Terminated
    server INVITE:     Proceeding -2xx-> Terminated (the TU retransmits the 2xx until the ACK)
                          \\-- 3xx-6xx -> Completed (timer G resends, H gives up) -ACK-> Confirmed (I)
    server non-INVITE: Trying -1xx-> Proceeding -final-> Completed (timer J absorbs retransmissions)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Union

from .message import SipRequest, SipResponse

T1 = 0.5  # round-trip estimate
T2 = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # how long a message stays in the network
TIMEOUT = 64 * T1  # timers B, F, H and J

Address = tuple[str, int]


@dataclass(frozen=True)
class Send:
    message: SipRequest | SipResponse
    dest: Address


@dataclass(frozen=True)
class Deliver:
    """A response for the client's TU, or a request (including a retransmission-free ACK) for the
    server's TU."""

    message: SipRequest | SipResponse


@dataclass(frozen=True)
class Timeout:
    """No final response in time (client: timer B/F), or no ACK for a final response (server: H)."""


Action = Union[Send, Deliver, Timeout]


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def client_key(branch: str, method: str) -> tuple[str, str]:
    """Responses match a client transaction by the top Via branch and the CSeq method (17.1.3)."""
    return branch, "INVITE" if method == "ACK" else method


def server_key(request: SipRequest) -> tuple[str, str, str] | None:
    """Requests match a server transaction by branch, sent-by and method, ACK matching its INVITE
    (17.2.3). None for a request whose branch lacks the RFC 3261 magic cookie: such old peers
    are matched by the endpoint through the dialog instead."""
    via = request.top_via
    if via is None or not (via.branch or "").startswith("z9hG4bK"):
        return None
    sent_by = f"{via.host}:{via.port or 5060}"
    method = "INVITE" if request.method == "ACK" else request.method
    return via.branch, sent_by, method


class _Transaction:
    """What both kinds share: the request, its timers, and termination."""

    def __init__(self, request: SipRequest, reliable: bool):
        self.request = request
        self.reliable = reliable  # over TCP nothing is retransmitted and the wait states last 0 s
        self.invite = request.method == "INVITE"
        self.transport = "tcp" if reliable else "udp"
        self._interval = T1
        self._retransmit_at: float | None = None  # timer A / E (client), G (server)
        self._give_up_at: float | None = None  # timer B / F (client), H (server)
        self._end_at: float | None = None  # timer D / K (client), I / J (server)
        self.state = State.TRYING

    @property
    def done(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        times = [t for t in (self._retransmit_at, self._give_up_at, self._end_at) if t is not None]
        return min(times) if times and not self.done else None

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._retransmit_at = self._give_up_at = self._end_at = None

    # the longest retransmission interval (None: doubling without a cap, the client INVITE's timer A)
    _max_interval: float | None = T2

    def _resend(self) -> Send:
        raise NotImplementedError

    def tick(self, now: float) -> list[Action]:
        if self.done:
            return []
        if self._end_at is not None and now >= self._end_at:
            self._terminate()
            return []
        if self._give_up_at is not None and now >= self._give_up_at:
            self._terminate()
            return [Timeout()]  # client: no final response (B, F); server: no ACK (H)
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._interval *= 2
            if self._max_interval is not None:
                self._interval = min(self._interval, self._max_interval)
            self._retransmit_at = now + self._interval
            return [self._resend()]
        return []


class ClientTransaction(_Transaction):
    """One request we sent, until its final response (17.1)."""

    def __init__(self, request: SipRequest, dest: Address, now: float, reliable: bool = False):
        super().__init__(request, reliable)
        self.dest = dest
        if self.invite:
            self._max_interval = None  # timer A doubles until timer B (17.1.1.2)
        self.state = State.CALLING if self.invite else State.TRYING
        via = request.top_via
        self.key = client_key(via.branch if via else "", request.method)
        self.final: SipResponse | None = None
        self._ack: SipRequest | None = None
        self._retransmit_at = None if reliable else now + T1  # timer A / E
        self._give_up_at = now + TIMEOUT  # timer B / F

    def start(self) -> list[Action]:
        return [Send(self.request, self.dest)]

    def receive(self, response: SipResponse, now: float) -> list[Action]:
        if self.done:
            return []
        status = response.status
        if self.state is State.COMPLETED:
            # a retransmitted final response: our ACK was lost (INVITE), or nothing to do
            return [Send(self._ack, self.dest)] if self.invite and self._ack is not None else []
        if status < 200:
            if self.state in (State.CALLING, State.TRYING):
                self.state = State.PROCEEDING
                if self.invite:
                    self._retransmit_at = None  # timer A stops; B stops too (the TU may CANCEL)
                    self._give_up_at = None
                elif self._retransmit_at is not None:
                    self._interval = T2
            return [Deliver(response)]
        self.final = response
        if self.invite and status < 300:
            # 2xx: the transaction ends here; the dialog ACKs it (and its retransmissions)
            self._terminate()
            return [Deliver(response)]
        self.state = State.COMPLETED
        self._retransmit_at = self._give_up_at = None
        actions: list[Action] = [Deliver(response)]
        if self.invite:
            self._ack = self._ack_for(response)
            actions.insert(0, Send(self._ack, self.dest))
            self._end_at = now + (0 if self.reliable else 32.0)  # timer D
        else:
            self._end_at = now + (0 if self.reliable else T4)  # timer K
        return actions

    def _resend(self) -> Send:
        return Send(self.request, self.dest)

    def transport_failed(self) -> list[Action]:
        """The message could not be sent (connection refused, unreachable): as a timeout (17.1.4)."""
        if self.done:
            return []
        self._terminate()
        return [Timeout()]

    def _ack_for(self, response: SipResponse) -> SipRequest:
        """The ACK of a non-2xx final response (17.1.1.3): same branch and Request-URI as the INVITE,
        the response's To (with its tag), the INVITE's Route headers."""
        req = self.request
        ack = SipRequest("ACK", req.uri)
        ack.headers.add("Via", req.headers.get_all("Via")[0])
        for route in req.headers.get_all("Route"):
            ack.headers.add("Route", route)
        ack.headers.add("Max-Forwards", "70")
        ack.headers.add("From", req.headers.get("From"))
        ack.headers.add("To", response.headers.get("To"))
        ack.headers.add("Call-ID", req.headers.get("Call-ID"))
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        return ack


class ServerTransaction(_Transaction):
    """One request we received, until our final response is safely delivered (17.2)."""

    def __init__(self, request: SipRequest, source: Address, now: float, reliable: bool = False):
        super().__init__(request, reliable)
        self.source = source
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.key = server_key(request)
        self.last_response: SipResponse | None = None

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        """The TU's response. A 2xx to an INVITE ends the transaction: the TU retransmits it."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # a final response was already sent
        self.last_response = response
        actions: list[Action] = [Send(response, self.source)]
        if response.status < 200:
            self.state = State.PROCEEDING
        elif self.invite and response.status < 300:
            self._terminate()
        elif self.invite:
            self.state = State.COMPLETED
            self._retransmit_at = None if self.reliable else now + T1
            self._give_up_at = now + TIMEOUT
        else:
            self.state = State.COMPLETED
            self._end_at = now + (0 if self.reliable else TIMEOUT)
        return actions

    def receive(self, request: SipRequest, now: float) -> list[Action]:
        """A retransmission of our request, or the ACK of our non-2xx final response."""
        if request.method == "ACK":
            if self.invite and self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._retransmit_at = self._give_up_at = None
                self._end_at = now + (0 if self.reliable else T4)  # timer I
            return []
        if self.last_response is not None and self.state in (State.PROCEEDING, State.COMPLETED, State.TRYING):
            return [Send(self.last_response, self.source)]
        return []

    def _resend(self) -> Send:
        return Send(self.last_response, self.source)
