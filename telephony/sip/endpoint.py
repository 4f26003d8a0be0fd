"""The SIP endpoint: sockets (UDP and TCP), the transaction layer, and dispatch to the user agent.

The thin asyncio layer around the sans-IO parts: bytes from the sockets go through `parse_message`
or a per-connection `StreamParser`; each message is matched to its transaction (transaction.py),
whose actions are carried out here; what is new goes to the transaction user (`SipHandler`: the
user agent in ua.py). A malformed message is answered with the error it earns when enough of it
can be read to address a response (400, 505, 513...), otherwise dropped; either way it is logged and
nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Callable, Protocol

from .connections import ConnectionTable, TcpLimits
from .message import (SipParseError, SipRequest, SipResponse, StreamParser, make_response, new_branch,
                      parse_message)
from .transaction import Address, ClientTransaction, Deliver, Send, ServerTransaction, Timeout, server_key

log = logging.getLogger(__name__)

TICK_S = 0.02  # transaction timers' resolution (T1 is 500 ms)
SWEEP_S = 1.0  # how often idle TCP connections are looked for


class SipTimeout(TimeoutError):
    """No final response to a request we sent (timer B/F, or the transport failed)."""


class SipHandler(Protocol):
    """The transaction user: what the endpoint hands up."""

    def on_request(self, request: SipRequest, txn: ServerTransaction | None, transport: str, source: Address) -> None:
        """A new request (`txn` None for an ACK to a 2xx, which has no transaction of its own)."""

    def on_cancel(self, invite_txn: ServerTransaction) -> None:
        """The INVITE of `invite_txn` was cancelled (the endpoint has answered the CANCEL 200)."""

    def on_stray_response(self, response: SipResponse, transport: str, source: Address) -> None:
        """A response no transaction waits for (a retransmitted 2xx to an INVITE: re-ACK it)."""

    def connections_in_use(self) -> set[Address]:
        """The TCP connections (peer addresses) live calls use: they stay open, however quiet."""


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, endpoint: "SipEndpoint"):
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr) -> None:
        self.endpoint._on_bytes(data, "udp", (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like
        log.debug("sip udp: %s", exc)


class SipEndpoint:
    def __init__(self, handler: SipHandler, host: str = "127.0.0.1", port: int = 5060,
                 transports: tuple[str, ...] = ("udp", "tcp"), user: str = "agent",
                 clock: Callable[[], float] = time.monotonic, tcp_limits: TcpLimits | None = None):
        self.handler = handler
        self.host = host
        self.port = port
        self.transports = transports
        self.user = user
        self.clock = clock
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._connections: dict[Address, asyncio.StreamWriter] = {}  # inbound and the ones we opened
        self.tcp = ConnectionTable(tcp_limits or TcpLimits(), self._connections_in_use)  # the inbound ones
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[str, str, str], ServerTransaction] = {}
        self._waiters: dict[ClientTransaction, tuple[asyncio.Future, Callable[[SipResponse], None] | None]] = {}
        self._ticker: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"received": 0, "malformed": 0, "sent": 0, "rejected": 0}

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if "udp" in self.transports:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, self.port))
            self.port = self._udp.get_extra_info("sockname")[1]  # port 0: the one the system gave
        if "tcp" in self.transports:
            self._tcp_server = await asyncio.start_server(self._on_tcp_client, self.host, self.port)
            if self.port == 0:
                self.port = self._tcp_server.sockets[0].getsockname()[1]
        self._ticker = loop.create_task(self._tick_loop(), name="sip-timers")
        log.info("SIP listening on %s:%d (%s)", self.host, self.port, "+".join(self.transports))

    async def close(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._connections.values()):
            writer.close()
        self._connections.clear()
        if self._tcp_server:
            self._tcp_server.close()
        if self._udp:
            self._udp.close()
        for future, _ in self._waiters.values():
            if not future.done():
                future.set_exception(SipTimeout("endpoint closed"))
        self._waiters.clear()

    def contact(self, transport: str = "udp", user: str | None = None) -> str:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"<sip:{user or self.user}@{self._uri_host()}:{self.port}{suffix}>"

    def _uri_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def via(self, transport: str = "udp") -> str:
        return f"SIP/2.0/{transport.upper()} {self._uri_host()}:{self.port};branch={new_branch()};rport"

    # -- sending ------------------------------------------------------------------------------
    async def request(self, request: SipRequest, dest: Address, transport: str = "udp",
                      on_provisional: Callable[[SipResponse], None] | None = None) -> SipResponse:
        """Send `request` in a client transaction; return its final response (raise SipTimeout)."""
        if "Via" not in request.headers:
            request.headers.prepend("Via", self.via(transport))
        now = self.clock()
        txn = ClientTransaction(request, dest, now, reliable=transport == "tcp")
        future = asyncio.get_running_loop().create_future()
        self._clients[txn.key] = txn
        self._waiters[txn] = (future, on_provisional)
        await self._run(txn, txn.start(), transport)
        try:
            return await future
        finally:
            self._waiters.pop(txn, None)

    def respond(self, txn: ServerTransaction, response: SipResponse) -> None:
        self._spawn(self._run(txn, txn.respond(response, self.clock()), txn.transport))

    def send(self, message: SipRequest | SipResponse, dest: Address, transport: str = "udp") -> None:
        """Outside any transaction: an ACK to a 2xx, a retransmitted 2xx."""
        self._spawn(self._send(message, dest, transport))

    def respond_stateless(self, request: SipRequest, status: int, reason: str | None = None,
                          transport: str = "udp", source: Address | None = None) -> None:
        if request.method == "ACK":
            return  # an ACK is never answered
        dest = source or _response_dest(request)
        if dest is not None:
            self.send(make_response(request, status, reason), dest, transport)

    async def _send(self, message: SipRequest | SipResponse, dest: Address, transport: str) -> None:
        data = message.to_bytes()
        self.stats["sent"] += 1
        if transport == "udp":
            if self._udp is None:
                raise ConnectionError("no UDP transport")
            self._udp.sendto(data, dest)
            return
        writer = self._connections.get(dest)
        if writer is None or writer.is_closing():
            reader, writer = await asyncio.wait_for(asyncio.open_connection(dest[0], dest[1]), 5.0)
            self._connections[dest] = writer
            self._spawn(self._read_tcp(reader, writer, dest))
        writer.write(data)
        await writer.drain()

    async def _run(self, txn: ClientTransaction | ServerTransaction, actions: list, transport: str) -> None:
        for action in actions:
            if isinstance(action, Send):
                try:
                    await self._send(action.message, action.dest, transport)
                except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                    log.warning("sip: sending to %s:%d failed: %s", *action.dest, exc)
                    if isinstance(txn, ClientTransaction):
                        await self._run(txn, txn.transport_failed(), transport)
            elif isinstance(action, Deliver) and isinstance(txn, ClientTransaction):
                self._deliver(txn, action.message)
            elif isinstance(action, Timeout):
                waiter = self._waiters.get(txn) if isinstance(txn, ClientTransaction) else None
                if waiter and not waiter[0].done():
                    waiter[0].set_exception(SipTimeout(f"no answer to {txn.request.method}"))
        if txn.done:
            self._forget(txn)

    def _deliver(self, txn: ClientTransaction, response: SipResponse) -> None:
        waiter = self._waiters.get(txn)
        if waiter is None:
            return
        future, on_provisional = waiter
        if response.status < 200:
            if on_provisional is not None:
                try:
                    on_provisional(response)
                except Exception:
                    log.exception("sip: provisional response handler failed")
        elif not future.done():
            future.set_result(response)

    def _forget(self, txn: ClientTransaction | ServerTransaction) -> None:
        if isinstance(txn, ClientTransaction):
            if self._clients.get(txn.key) is txn:
                del self._clients[txn.key]
        elif txn.key is not None and self._servers.get(txn.key) is txn:
            del self._servers[txn.key]

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("sip: %r", task.exception())

    async def _tick_loop(self) -> None:
        next_sweep = self.clock() + SWEEP_S
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            if now >= next_sweep:
                next_sweep = now + SWEEP_S
                try:
                    self._close_idle_connections(now)
                except Exception:  # never at the cost of the transaction timers below
                    log.exception("sip: closing idle TCP connections failed")
            for txn in [*self._clients.values(), *self._servers.values()]:
                deadline = txn.next_deadline()
                if deadline is not None and deadline <= now:
                    await self._run(txn, txn.tick(now), txn.transport)
                elif txn.done:
                    self._forget(txn)

    # -- receiving ----------------------------------------------------------------------------
    async def _on_tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = (peer[0], peer[1])
        admission = self.tcp.admit(source, self.clock())
        for address in admission.evict:
            log.info("sip tcp %s:%d: idle connection closed to make room", *address)
            self._close_connection(address)
        if not admission.accepted:
            log.warning("sip tcp %s:%d: connection refused (every connection of its address carries a call)",
                        *source)
            writer.close()
            return
        self._connections[source] = writer
        await self._read_tcp(reader, writer, source)

    def _connections_in_use(self) -> set[Address]:
        """Those a call, or a server transaction not yet finished (an INVITE being answered), uses."""
        used = {txn.source for txn in self._servers.values() if txn.transport == "tcp" and not txn.done}
        of_calls = getattr(self.handler, "connections_in_use", None)
        return used | of_calls() if of_calls is not None else used

    def _close_idle_connections(self, now: float) -> None:
        for address in self.tcp.expired(now):
            log.info("sip tcp %s:%d: no message for too long: connection closed", *address)
            self._close_connection(address)

    def _close_connection(self, address: Address) -> None:
        writer = self._connections.pop(address, None)
        if writer is not None:
            writer.close()  # its reader sees the end and finishes

    async def _read_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: Address) -> None:
        parser = StreamParser()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    messages = parser.feed(data)
                except SipParseError as exc:
                    # a stream cannot be resynchronised after garbage: say why (if we can) and close
                    self.stats["malformed"] += 1
                    log.warning("sip tcp %s:%d: malformed message (%s): connection closed", *source, exc.reason)
                    break
                if messages:
                    self.tcp.message(source, self.clock())
                for message in messages:
                    self._on_message(message, "tcp", source)
        except (ConnectionError, OSError):
            pass
        finally:
            if self._connections.get(source) is writer:
                del self._connections[source]
                self.tcp.remove(source)
            writer.close()

    def _on_bytes(self, data: bytes, transport: str, source: Address) -> None:
        if not data.strip():
            return  # CRLF keepalive
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.stats["malformed"] += 1
            log.warning("sip %s %s:%d: malformed message (%s)", transport, *source, exc.reason)
            self._reject_malformed(data, exc, transport, source)
            return
        self._on_message(message, transport, source)

    def _on_message(self, message: SipRequest | SipResponse, transport: str, source: Address) -> None:
        self.stats["received"] += 1
        try:
            if isinstance(message, SipResponse):
                self._on_response(message, transport, source)
            else:
                self._on_request(message, transport, source)
        except SipParseError as exc:  # a header the parser let through but the layers cannot use
            self.stats["malformed"] += 1
            log.warning("sip %s %s:%d: unusable message (%s)", transport, *source, exc.reason)
            if isinstance(message, SipRequest):
                self.respond_stateless(message, exc.status, exc.reason, transport, source)
        except Exception:
            log.exception("sip %s %s:%d: handling %s failed", transport, *source,
                          getattr(message, "method", getattr(message, "status", "?")))
            if isinstance(message, SipRequest):
                self.respond_stateless(message, 500, "Server Internal Error", transport, source)

    def _on_response(self, response: SipResponse, transport: str, source: Address) -> None:
        via = response.top_via
        cseq = response.cseq
        if via is None or cseq is None:
            return
        txn = self._clients.get((via.branch or "", "INVITE" if cseq[1] == "ACK" else cseq[1]))
        if txn is None:
            self.handler.on_stray_response(response, transport, source)
            return
        self._spawn(self._run(txn, txn.receive(response, self.clock()), transport))

    def _on_request(self, request: SipRequest, transport: str, source: Address) -> None:
        _mark_received(request, source)
        key = server_key(request)
        now = self.clock()
        if request.method == "CANCEL":
            self._on_cancel(request, key, transport, source)
            return
        txn = self._servers.get(key) if key is not None else None
        if txn is not None:  # a retransmission, or the ACK of our error response
            self._spawn(self._run(txn, txn.receive(request, now), transport))
            return
        if request.method == "ACK":
            self.handler.on_request(request, None, transport, source)  # ACK for a 2xx: the dialog's
            return
        txn = ServerTransaction(request, source, now, reliable=transport == "tcp")
        if key is not None:
            self._servers[key] = txn
        self.handler.on_request(request, txn, transport, source)

    def _on_cancel(self, cancel: SipRequest, key, transport: str, source: Address) -> None:
        invite = self._servers.get((key[0], key[1], "INVITE")) if key is not None else None
        if invite is None:
            self.respond_stateless(cancel, 481, "Call/Transaction Does Not Exist", transport, source)
            return
        self.send(make_response(cancel, 200), source, transport)
        if invite.state.value == "proceeding":  # no final response yet: the TU answers 487
            self.handler.on_cancel(invite)

    def _reject_malformed(self, data: bytes, exc: SipParseError, transport: str, source: Address) -> None:
        """Answer a malformed request with its error, when its Via, From, To, Call-ID and CSeq can
        still be read line by line; otherwise nothing can be addressed and it is dropped."""
        if isinstance(exc.message, SipRequest):  # the head parsed; a later check failed
            try:
                if exc.message.method != "ACK" and exc.message.top_via is not None:
                    response = make_response(exc.message, exc.status, exc.reason[:100])
                    self.stats["rejected"] += 1
                    self.send(response, source, transport)
                return
            except (SipParseError, ValueError):
                pass  # not even that much is usable: read the lines below
        text = data[:8192].decode("utf-8", "replace")
        first, _, rest = text.partition("\n")
        if not re.match(r"[A-Za-z]+ \S+ SIP/", first.strip()) or first.startswith("SIP/"):
            return
        wanted = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
                  "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
        found: list[tuple[str, str]] = []
        for line in rest.splitlines():
            if not line.strip():
                break
            name, sep, value = line.partition(":")
            canonical = wanted.get(name.strip().lower())
            if sep and canonical:
                found.append((canonical, value.strip()))
        names = {n for n, _ in found}
        if not {"Via", "From", "To", "Call-ID", "CSeq"} <= names:
            return
        response = SipResponse(exc.status, exc.reason[:100].replace("\r", " ").replace("\n", " "))
        try:
            for name, value in found:
                response.headers.add(name, value)
        except ValueError:
            # a control character in one of them (often why the message was malformed): it cannot
            # be echoed, so there is nothing to address a response with. Raised from here it escaped
            # the datagram callback and asyncio logged an error for every such datagram.
            return
        self.stats["rejected"] += 1
        self.send(response, source, transport)


def _mark_received(request: SipRequest, source: Address) -> None:
    """RFC 3261 18.2.1 and RFC 3581: note where the request really came from in its top Via, so the
    response goes back there (through NAT too)."""
    vias = request.vias
    if not vias:
        return
    top = vias[0]
    changed = False
    if top.host != source[0]:
        top.params["received"] = source[0]
        changed = True
    if "rport" in top.params and top.params["rport"] is None:
        top.params["rport"] = str(source[1])
        changed = True
    if changed:
        values = request.headers.get_all("Via")
        request.headers.remove("Via")
        for value in reversed([str(top), *values[1:]]):
            request.headers.prepend("Via", value)


def _response_dest(request: SipRequest) -> Address | None:
    via = request.top_via
    if via is None:
        return None
    host = via.params.get("received") or via.host
    port = via.params.get("rport") or via.port or 5060
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None
