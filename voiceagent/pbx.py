"""Asterisk calls with the agent on them: AudioSocket for the media, AMI for control (telephony/asterisk).

    caller ─► Asterisk ─AudioSocket(TCP)─► AudioSocketServer ─► AudioSocketLeg ─► CallSession ─► CallStore
                 ▲
                 └──────── AMI: which channel a UUID is (VarSet), Redirect to the human queue, Originate

The dialplan routes a DID to AudioSocket() with a fresh UUID it has first put in a channel variable
(docker/asterisk/extensions.conf); the AMI events tie that UUID to the channel, so a transfer moves
the right caller. Transfers go only to the dialplan places named in `[asterisk] queues`: whatever a
caller says, the agent can move them only there.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Callable

from telephony.asterisk.ami import AmiClient, AmiError, ChannelInfo, OriginateResult
from telephony.asterisk.leg import AudioSocketLeg
from telephony.asterisk.server import AudioSocketConnection, AudioSocketServer
from voiceagent.legs.base import TransferResult

from .config import AsteriskConfig, Config
from .errors import ConfigError
from .record import CallRecord
from .runtime import Runtime, accept_when_loaded
from .engine import Channel, SessionOptions, run_call
from .store import CallStore
from .textnorm import mask_pii

log = logging.getLogger(__name__)

NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass(frozen=True)
class DialplanPlace:
    context: str
    exten: str
    priority: int = 1

    @classmethod
    def parse(cls, value: str) -> "DialplanPlace":
        """"context,exten[,priority]" as in Goto()."""
        parts = [p.strip() for p in value.split(",")]
        ok = re.compile(r"^[A-Za-z0-9_+*#.-]+$")
        if len(parts) not in (2, 3) or not all(ok.match(p) for p in parts):
            raise ConfigError(f"[asterisk] queues: {value!r} is not 'context,exten[,priority]'")
        priority = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 1
        return cls(parts[0], parts[1], priority)

    def __str__(self) -> str:
        return f"{self.context},{self.exten},{self.priority}"


@dataclass
class OutboundCall:
    """What `AsteriskService.originate` reports: the dial's outcome, and the call's record if it
    was answered and the agent talked."""

    number: str
    uuid: str
    result: OriginateResult
    record: CallRecord | None = None


class AsteriskService:
    def __init__(self, config: Config, runtime: Runtime | Callable[[], Runtime | None], store: CallStore | None = None,
                 host: str = "127.0.0.1", port: int = 9092):
        self.config = config
        self.ast: AsteriskConfig = config.asterisk
        self._runtime = runtime if callable(runtime) else (lambda: runtime)
        self.store = store
        self.queues = {name: DialplanPlace.parse(place) for name, place in self.ast.queues.items() if place}
        self.server = AudioSocketServer(self._on_call, host, port, max_calls=self.ast.max_calls,
                                        uuid_timeout_s=self.ast.uuid_timeout_s,
                                        media_timeout_s=self.ast.media_timeout_s, on_overflow=self._on_overflow)
        self.ami: AmiClient | None = None
        if self.ast.ami_host:
            self.ami = AmiClient(self.ast.ami_host, self.ast.ami_port, self.ast.ami_username, self.ast.ami_secret,
                                 uuid_variable=self.ast.uuid_variable, action_timeout_s=self.ast.action_timeout_s,
                                 reconnect_max_s=self.ast.ami_reconnect_max_s)
        self.records: list[CallRecord] = []  # finished calls of this process (newest last), for tests
        self._outbound: dict[str, tuple[asyncio.Future, SessionOptions]] = {}  # UUID -> the originated call
        self._ready_task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        self._ready_task = accept_when_loaded(self._runtime, self.server, "AudioSocket")
        await self.server.start()
        if self.ami is not None:
            self.ami.start()

    async def stop(self) -> None:
        if self._ready_task is not None:
            self._ready_task.cancel()
        await self.server.close()
        if self.ami is not None:
            await self.ami.close()

    def status(self) -> dict:
        return {"audiosocket": self.server.status(), "ami": self.ami.status() if self.ami else None,
                "queues": {k: str(v) for k, v in self.queues.items()}}

    # -- inbound (and answered outbound) calls --------------------------------------------------
    async def _on_call(self, conn: AudioSocketConnection) -> None:
        await self.run_call(conn)

    async def run_call(self, conn: AudioSocketConnection) -> CallRecord:
        runtime = self._runtime()
        assert runtime is not None  # the server takes no calls before
        key = str(conn.uuid)
        outbound = self._outbound.pop(key, None)
        info = await self.ami.channel_for(key, self.ast.channel_wait_s) if self.ami is not None else None
        if self.ami is not None and info is None:
            log.warning("audiosocket %s: no channel known for this UUID (is %s set before AudioSocket() and "
                        "the AMI user allowed 'dialplan' events?): transfers will fail", key, self.ast.uuid_variable)
        leg = AudioSocketLeg(conn, transfer_via=self._transfer_via(conn, lambda: info))
        if outbound is not None:
            options = outbound[1]
        else:
            options = SessionOptions(customer_id=runtime.customer_for_caller_id(info.caller_id if info else ""),
                                     ask_rating=self.config.call.ask_rating)
        if options.call is None:
            options.call = self.config.call

        async def release() -> None:
            if conn.active and not leg.transferred:
                await leg.hangup()

        def describe() -> dict:
            return {"kind": "audiosocket", "direction": "outbound" if outbound else "inbound", "uuid": key,
                    "asterisk_channel": info.channel if info else None, "uniqueid": info.uniqueid if info else None,
                    "caller": mask_pii(info.caller_id) if info and info.caller_id else None,
                    "exten": info.exten if info else None, "sample_rate": conn.sample_rate,
                    "end_reason": conn.end_reason, "media": leg.stats(), "transfers": leg.transfer_log}

        def started(session) -> None:
            log.info("call %s (AudioSocket %s, %s): %s %s", session.call_id, key, info.channel if info else "channel ?",
                     "outbound" if outbound else "inbound", mask_pii(info.caller_id) if info else "")

        record = await run_call(runtime, leg, options,
                                Channel("audiosocket", describe, started, release, records=self.records), self.store)
        if outbound is not None and not outbound[0].done():
            outbound[0].set_result(record)
        return record

    def _transfer_via(self, conn: AudioSocketConnection, channel: Callable[[], ChannelInfo | None]):
        if self.ami is None:
            return None

        async def transfer(target: str, summary: dict | None, entry: dict) -> TransferResult:
            place = self.queues.get(target)
            if place is None:  # the allow-list: only the configured places, never what was said
                log.warning("audiosocket %s: transfer to %r refused: not in [asterisk] queues", conn.uuid, target)
                entry["status"] = "refused"
                return TransferResult(False, "refused")
            info = channel() or await self.ami.channel_for(str(conn.uuid), self.ast.channel_wait_s)
            entry.update(place=str(place), method=self.ast.transfer_method, channel=info.channel if info else None)
            if info is None:
                log.warning("audiosocket %s: transfer impossible: the call's channel is unknown", conn.uuid)
                entry["error"] = "channel unknown"
                return TransferResult(False, "failed")
            try:
                # the human's side reads these (screen pop, SIP header): the call's id fetches the summary
                for name, value in self._handoff_variables(summary).items():
                    await self.ami.setvar(info.channel, name, value)
                if self.ast.transfer_method == "blind_transfer":
                    await self.ami.blind_transfer(info.channel, place.context, place.exten)
                else:
                    await self.ami.redirect(info.channel, place.context, place.exten, place.priority)
            except AmiError as exc:
                log.warning("audiosocket %s: transfer of %s to %s failed: %s", conn.uuid, info.channel, place, exc)
                entry["error"] = str(exc)
                return TransferResult(False, "failed")
            log.info("audiosocket %s: %s moved to %s (%s)", conn.uuid, info.channel, place, target)
            return TransferResult(True, "completed")

        return transfer

    @staticmethod
    def _handoff_variables(summary: dict | None) -> dict[str, str]:
        """Channel variables for the human's side; the double underscore makes Asterisk copy them to
        the channel that rings the human. Values are masked already (dialog/handoff.py) and kept to
        one line."""
        summary = summary or {}
        intents = summary.get("intents") or []
        emotion = summary.get("emotion")
        values = {"__VOICEAGENT_CALL_ID": summary.get("call_id"),
                  "__VOICEAGENT_INTENT": intents[-1] if isinstance(intents, list) and intents else None,
                  "__VOICEAGENT_EMOTION": emotion.get("now") if isinstance(emotion, dict) else None,
                  "__VOICEAGENT_REASON": summary.get("reason")}
        return {k: re.sub(r"[\r\n]+", " ", str(v))[:120] for k, v in values.items() if v}

    async def _on_overflow(self, conn: AudioSocketConnection) -> None:
        """More calls than `max_calls`: the caller goes to the people (if a queue is configured)
        rather than hearing nothing."""
        place = self.queues.get(self.ast.overflow_target) if self.ast.overflow_target else None
        if self.ami is None or place is None:
            return
        info = await self.ami.channel_for(str(conn.uuid), self.ast.channel_wait_s)
        if info is None:
            return
        try:
            await self.ami.redirect(info.channel, place.context, place.exten, place.priority)
            conn.close("overflow_redirected")
            log.info("audiosocket %s: over capacity, %s sent to %s", conn.uuid, info.channel, place)
        except AmiError as exc:
            log.warning("audiosocket %s: overflow redirect failed: %s", conn.uuid, exc)

    # -- outbound -------------------------------------------------------------------------------
    async def originate(self, number: str, options: SessionOptions | None = None,
                        wait_for_call: bool = True, channel: str | None = None,
                        ring_timeout_s: float | None = None) -> OutboundCall:
        """Have Asterisk call `number` (through `[asterisk] originate_channel`); when answered, the
        dialplan connects the call to AudioSocket with our UUID and the agent speaks first. Returns
        the dial's outcome (answered, busy, no_answer, congestion, failed, timeout, error) and, with
        `wait_for_call`, the record once the call ends. `channel` (with {number}) and `ring_timeout_s`
        replace the configured ones (a campaign's own trunk). Raises AmiUnavailable without AMI."""
        if self.ami is None:
            raise AmiError("no AMI configured ([asterisk] ami_host)")
        if not NUMBER.match(number):
            raise ValueError(f"not a phone number: {mask_pii(number)!r}")
        call_uuid = str(uuid.uuid4())
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        opts = options or SessionOptions(greeting=True)
        if opts.greeting is None:
            opts.greeting = True
        self._outbound[call_uuid] = (done, opts)
        ast = self.ast
        try:
            result = await self.ami.originate(
                (channel or ast.originate_channel).replace("{number}", number), ast.originate_context,
                ast.originate_exten, variables={ast.uuid_variable: call_uuid}, caller_id=ast.originate_caller_id,
                ring_timeout_s=ring_timeout_s or ast.ring_timeout_s)
            log.info("originate %s (%s): %s%s", mask_pii(number), call_uuid, result.outcome,
                     f" ({result.message})" if result.message and not result.answered else "")
            call = OutboundCall(number, call_uuid, result)
            if result.answered and not wait_for_call:  # run_call takes it; forgotten if the call never comes
                asyncio.get_running_loop().call_later(ast.uuid_timeout_s + ast.media_timeout_s,
                                                      self._outbound.pop, call_uuid, None)
                return call
            if result.answered:
                try:
                    call.record = await asyncio.wait_for(done, ast.media_timeout_s + self.config.call.max_call_s)
                except asyncio.TimeoutError:
                    log.warning("originate %s: answered, but no AudioSocket call came for it", call_uuid)
        except BaseException:
            self._outbound.pop(call_uuid, None)
            raise
        self._outbound.pop(call_uuid, None)
        return call
