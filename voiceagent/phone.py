"""Phone calls over SIP with the agent on them: the glue between the SIP user agent (telephony/sip)
and the real-time engine (engine/). Each answered call gets a SipLeg and runs through `run_call`; its
record is stored like any other call, with the SIP side of it (peer, codec, RTP counters, transfers).

    caller ──SIP/RTP──► UserAgent ─► SipCall ─► SipLeg ─► CallSession ─► CallStore
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Callable

from telephony.sip.call import SipCall
from telephony.sip.connections import TcpLimits
from telephony.sip.leg import SipLeg
from telephony.sip.register import Registrar, Registration
from telephony.sip.ua import CallFailed, Credentials, UserAgent

from .config import Config
from .record import CallRecord
from .runtime import Runtime, accept_when_loaded
from .engine import Channel, SessionOptions, run_call
from .store import CallStore
from .textnorm import mask_pii

log = logging.getLogger(__name__)


class PhoneService:
    def __init__(self, config: Config, runtime: Runtime | Callable[[], Runtime | None], store: CallStore | None = None,
                 host: str = "127.0.0.1", port: int = 5060):
        """`runtime`: the loaded models, or a function returning them once loaded (until then calls
        get 503 Service Unavailable with Retry-After)."""
        self.config = config
        self.sip = config.sip
        self._runtime = runtime if callable(runtime) else (lambda: runtime)
        self.store = store
        sip = config.sip
        credentials = Credentials(sip.username, sip.password) if sip.username else None
        queues = {k: v for k, v in sip.queues.items() if v}
        self.queues = queues
        self.ua = UserAgent(host, port, user=sip.user, transports=tuple(sip.transports), max_calls=sip.max_calls,
                            on_call=self._on_call, rtp_host=sip.rtp_host or host,
                            rtp_ports=(sip.rtp_port_min, sip.rtp_port_max),
                            transfer_allow=(*sip.transfer_allow, *queues.values()), credentials=credentials,
                            outbound_proxy=sip.outbound_proxy or None, rtp_timeout_s=sip.rtp_timeout_s,
                            codecs=tuple(sip.codecs), ack_timeout_s=sip.ack_timeout_s,
                            max_unacked_per_source=sip.max_unacked_per_source,
                            trusted_proxies=tuple(sip.trusted_proxies),
                            tcp_limits=TcpLimits(sip.tcp_max_connections, sip.tcp_max_per_source,
                                                 sip.tcp_first_message_s, sip.tcp_idle_s))
        self.registrar: Registrar | None = None
        self.records: list[CallRecord] = []  # the finished calls of this process (newest last), for tests
        self._ready_task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.ua.port

    async def start(self) -> None:
        self._ready_task = accept_when_loaded(self._runtime, self.ua, "SIP")
        await self.ua.start()
        if self.sip.registrar:
            self.registrar = Registrar(self.ua.endpoint, Registration(
                self.sip.registrar, self.sip.aor or f"sip:{self.sip.user}@{self.sip.registrar.split(':', 1)[1]}",
                self.sip.username or None, self.sip.password or None, self.sip.register_expires_s,
                "tcp" if self.sip.transports == ["tcp"] else "udp"))
            self.registrar.start()

    async def stop(self) -> None:
        if self._ready_task is not None:
            self._ready_task.cancel()
        if self.registrar is not None:
            await self.registrar.stop()
        await self.ua.close()

    # -- calls --------------------------------------------------------------------------------
    async def _on_call(self, call: SipCall) -> None:
        await self.run_call(call)

    async def run_call(self, call: SipCall, options: SessionOptions | None = None) -> CallRecord:
        runtime = self._runtime()
        assert runtime is not None  # the user agent takes no calls before
        leg = SipLeg(call, self.ua, targets=self.queues, bridge_ring_timeout_s=self.sip.ring_timeout_s,
                     transfer_method=self.sip.transfer_method)
        if options is None:
            options = SessionOptions(customer_id=runtime.customer_for_caller_id(_user_part(call.remote)),
                                     ask_rating=self.config.call.ask_rating)
        if options.call is None:
            options.call = self.config.call  # this service's [call] settings (greeting, timers)

        async def release() -> None:
            if call.active and call.bridged_to is None and call.end_reason is None:
                await call.bye("agent_bye")

        def describe() -> dict:
            return {"kind": "sip", "direction": call.direction, "sip_call_id": call.call_id,
                    "transport": call.transport, "remote": mask_pii(call.remote), "end_reason": call.end_reason,
                    "codec": call.rtp.codec_name, "rtp": call.rtp.stats_dict(), "transfers": leg.transfer_log}

        def started(session) -> None:
            log.info("call %s (SIP %s): %s %s", session.call_id, call.call_id, call.direction, mask_pii(call.remote))

        return await run_call(runtime, leg, options, Channel("sip", describe, started, release, records=self.records),
                              self.store)

    async def dial(self, target: str, options: SessionOptions | None = None) -> CallRecord:
        """Place one outbound call and run the agent on it (it speaks first). Raises CallFailed."""
        call = await self.ua.invite(target, ring_timeout_s=self.sip.ring_timeout_s)
        return await self.run_call(call, options or SessionOptions(greeting=True))


def _user_part(remote: str) -> str:
    m = re.search(r"sips?:([^@;>]+)@", remote)
    return m.group(1) if m else ""


__all__ = ["PhoneService", "CallFailed"]
