"""An Asterisk stand-in for the tests: Asterisk cannot be installed here (no package, no network to
build it), so this peer does what Asterisk does on the two interfaces the agent uses, following the
documentation and the source (main/manager.c, apps/app_audiosocket.c, res/res_audiosocket.c).

AMI (TCP): the banner line "Asterisk Call Manager/<version>"; messages are "Key: Value" lines ended
by an empty line, CRLF; actions carry ActionID, echoed in the response and in the events a list
action produces; events are filtered by the user's `read` classes and by the Login's Events. Login
with the wrong secret: "Response: Error / Message: Authentication failed" and the connection is
closed. Any other action before login: "Permission denied" (and nothing else happens); an action the
user's `write` classes do not allow: "Permission denied"; an unknown one: "Invalid/unknown command".
Redirect, BlindTransfer, Setvar, Getvar, Hangup, Status (a list: EventList start ... StatusComplete),
Originate (Async: "Originate successfully queued", then an OriginateResponse event with
Response Success/Failure and Reason 4 answered, 5 busy, 3 rang out, 8 congestion), Ping, Logoff.

AudioSocket (the dialplan application): the channel is answered, a TCP connection to the agent,
the UUID message first, then the caller's audio as 0x10 messages of 320 bytes (20 ms of 8 kHz
slin) paced by the channel's clock, silence when the caller says nothing, DTMF as 0x03. From the
agent it takes audio (any kind 0x10-0x18, length >= 1) and hangup (0x00 or the socket closing);
anything else, or an audio message of length 0, ends the call as Asterisk does ("Received
AudioSocket message other than hangup or audio"). A Redirect takes the channel out of AudioSocket()
(its socket closes) and on to the new dialplan place. The caller hanging up closes the socket
(app_audiosocket returns on a NULL ast_read; it sends no 0x00).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import numpy as np

from telephony.asterisk.audiosocket import AUDIO_RATES, HEADER, Kind, encode_audio, encode_dtmf, encode_uuid

EOL = "\r\n"
VERSION = "Asterisk Call Manager/9.0.0"

# which event class each event belongs to, and which class each action needs (manager.c)
EVENT_CLASS = {"Newchannel": "call", "Newstate": "call", "Hangup": "call", "OriginateResponse": "call",
               "VarSet": "dialplan", "Newexten": "dialplan", "FullyBooted": "system", "Shutdown": "system",
               "Status": "call", "StatusComplete": "call"}
ACTION_CLASS = {"Redirect": {"call"}, "BlindTransfer": {"call"}, "Setvar": {"call"}, "Getvar": {"call", "reporting"},
                "Hangup": {"system", "call"}, "Status": {"system", "call", "reporting"}, "Originate": {"originate"},
                "Ping": set(), "Logoff": set()}


@dataclass
class ManagerUser:
    secret: str
    read: set = field(default_factory=lambda: {"call", "dialplan"})
    write: set = field(default_factory=lambda: {"call", "originate"})


@dataclass
class Channel:
    name: str
    uniqueid: str
    caller_id: str
    exten: str
    context: str = "voiceagent-inbound"
    variables: dict = field(default_factory=dict)
    state: str = "Up"
    # what the agent sent over AudioSocket: (arrival time s since the call connected, kind, payload)
    received: list = field(default_factory=list)
    redirected_to: tuple | None = None
    hangup_cause: int | None = None
    ended_by: str | None = None  # "caller", "agent" (0x00 or socket closed), "redirect", "protocol", "ami"
    protocol_error: str | None = None
    connected_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _writer: asyncio.StreamWriter | None = None

    def heard(self) -> np.ndarray:
        """The agent's audio as the caller heard it (8 kHz float), frames in arrival order."""
        pcm = b"".join(p for _, k, p in self.received if k in AUDIO_RATES and AUDIO_RATES[k] == 8000)
        return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0

    def audio_arrivals(self) -> list[float]:
        return [t for t, k, _ in self.received if k in AUDIO_RATES]


class FakeAsterisk:
    def __init__(self, users: dict[str, ManagerUser] | None = None, uuid_variable: str = "VOICEAGENT_UUID"):
        self.users = users if users is not None else {"voiceagent": ManagerUser("s3cret")}
        self.uuid_variable = uuid_variable
        self.ami_port = 0
        self.channels: dict[str, Channel] = {}
        self.actions: list[dict] = []  # every action received (for assertions), in order
        self.originate_outcome = "answered"  # answered | busy | no_answer | congestion | never
        self.originate_audio: np.ndarray | None = None  # what the called person says once answered
        # per dialled number (the Channel's "PJSIP/NUMBER@trunk"): (outcome, audio), else the two above
        self.originate_plan: dict[str, tuple[str, np.ndarray | None]] = {}
        self.audiosocket_addr: tuple[str, int] | None = None  # where the dialplan's AudioSocket() connects
        self.respond = True  # False: actions get no response at all (a hung Asterisk)
        self.send_varset = True  # False: the dialplan's Set() event is not sent (AMI link missed it)
        self._server: asyncio.base_events.Server | None = None
        self._sessions: set["_AmiSession"] = set()
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._epoch = int(time.time())

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._on_ami, "127.0.0.1", port or self.ami_port)
        self.ami_port = self._server.sockets[0].getsockname()[1]

    async def stop_ami(self) -> None:
        """Asterisk's manager goes away (a restart): Shutdown event, connections closed, port closed."""
        for session in list(self._sessions):
            session.event({"Event": "Shutdown", "Shutdown": "Cleanly", "Restart": "True"})
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        await self.stop_ami()
        for channel in self.channels.values():
            self._end_audiosocket(channel, "caller")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- AMI ----------------------------------------------------------------------------------
    async def _on_ami(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _AmiSession(self, writer)
        self._sessions.add(session)
        writer.write((VERSION + EOL).encode())
        buffer = ""
        try:
            while not session.closed:
                data = await reader.read(4096)
                if not data:
                    break
                buffer += data.decode("utf-8", "replace")
                while EOL + EOL in buffer:
                    block, buffer = buffer.split(EOL + EOL, 1)
                    fields: dict = {}
                    for line in block.split(EOL):
                        key, sep, value = line.partition(":")
                        if not sep:
                            continue
                        key, value = key.strip(), value.strip()
                        if key in fields:  # repeated keys (Variable:) collect
                            fields[key] = (fields[key] if isinstance(fields[key], list) else [fields[key]]) + [value]
                        else:
                            fields[key] = value
                    if fields:
                        await session.handle(fields)
        except (ConnectionError, OSError):
            pass
        finally:
            self._sessions.discard(session)
            session.close()

    def event(self, fields: dict) -> None:
        for session in list(self._sessions):
            session.event(fields)

    def _channel_event(self, name: str, channel: Channel, **extra) -> dict:
        fields = {"Event": name, "Channel": channel.name, "ChannelState": "6" if channel.state == "Up" else "4",
                  "ChannelStateDesc": channel.state, "CallerIDNum": channel.caller_id, "CallerIDName": "<unknown>",
                  "ConnectedLineNum": "<unknown>", "ConnectedLineName": "<unknown>", "Language": "en",
                  "AccountCode": "", "Context": channel.context, "Exten": channel.exten, "Priority": "1",
                  "Uniqueid": channel.uniqueid, "Linkedid": channel.uniqueid, **extra}
        self.event(fields)
        return fields

    def _new_channel(self, caller_id: str, exten: str, tech: str = "PJSIP/trunk") -> Channel:
        n = next(self._seq)
        channel = Channel(f"{tech}-{n:08x}", f"{self._epoch}.{n}", caller_id, exten)
        self.channels[channel.name] = channel
        self._channel_event("Newchannel", channel)
        return channel

    def _set_var(self, channel: Channel, name: str, value: str) -> None:
        channel.variables[name] = value
        if name != self.uuid_variable or self.send_varset:
            self._channel_event("VarSet", channel, Variable=name, Value=value)

    def _hangup(self, channel: Channel, cause: int, by: str) -> None:
        if channel.hangup_cause is not None:
            return
        channel.hangup_cause = cause
        channel.ended_by = channel.ended_by or by
        self._end_audiosocket(channel, by)
        self._channel_event("Hangup", channel, Cause=str(cause),
                            **{"Cause-txt": "Normal Clearing" if cause == 16 else "Unknown"})
        channel.ended.set()

    def _end_audiosocket(self, channel: Channel, by: str) -> None:
        channel.ended_by = channel.ended_by or by
        if channel._writer is not None and not channel._writer.is_closing():
            channel._writer.close()
        channel.ended.set()

    # -- AudioSocket (the dialplan application) -----------------------------------------------
    async def incoming_call(self, caller_id: str, exten: str, audio_8k: np.ndarray, listen_s: float = 8.0,
                            dtmf: list[tuple[float, str]] | None = None) -> Channel:
        """A call arrives on the trunk for `exten`; the dialplan answers, sets the UUID variable and
        runs AudioSocket() to the agent. The caller says `audio_8k`, then listens `listen_s` seconds
        (silence goes on being sent, as from a real line) and hangs up, unless the agent hangs up or
        the channel is redirected first. Returns once connected; `channel.ended` is set at the end."""
        channel = self._new_channel(caller_id, exten)
        call_uuid = str(uuidlib.uuid4())
        self._set_var(channel, self.uuid_variable, call_uuid)
        await self._audiosocket(channel, call_uuid, audio_8k, listen_s, dtmf or [])
        return channel

    async def _audiosocket(self, channel: Channel, call_uuid: str, audio: np.ndarray, listen_s: float,
                           dtmf: list[tuple[float, str]]) -> None:
        assert self.audiosocket_addr is not None, "set audiosocket_addr (the agent's AudioSocket server)"
        reader, writer = await asyncio.open_connection(*self.audiosocket_addr)
        channel._writer = writer
        channel.connected_at = time.monotonic()
        writer.write(encode_uuid(uuidlib.UUID(call_uuid)))
        self._spawn(self._stream(channel, writer, audio, listen_s, dtmf))
        self._spawn(self._receive(channel, reader))

    async def _stream(self, channel: Channel, writer: asyncio.StreamWriter, audio: np.ndarray, listen_s: float,
                      dtmf: list[tuple[float, str]]) -> None:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        total = len(pcm) // 320 + int(listen_s * 50)
        keys = sorted(dtmf)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(total):
            if channel.ended.is_set() or writer.is_closing():
                return
            frame = pcm[i * 320:(i + 1) * 320]
            frame = frame + b"\x00" * (320 - len(frame))
            writer.write(encode_audio(frame, 8000))
            while keys and keys[0][0] <= i * 0.02:
                writer.write(encode_dtmf(keys.pop(0)[1]))
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
        if not channel.ended.is_set():
            self._hangup(channel, 16, "caller")  # the caller hangs up: the socket closes (no 0x00)

    async def _receive(self, channel: Channel, reader: asyncio.StreamReader) -> None:
        buffer = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= HEADER.size:
                    kind, length = HEADER.unpack_from(buffer)
                    if kind in AUDIO_RATES or kind == Kind.HANGUP:
                        if kind != Kind.HANGUP and length < 1:
                            channel.protocol_error = "Invalid message length received from AudioSocket server."
                            self._hangup(channel, 16, "protocol")
                            return
                    else:
                        channel.protocol_error = ("Received AudioSocket message other than hangup or audio, "
                                                  f"refer to protocol specification (kind 0x{kind:02x})")
                        self._hangup(channel, 16, "protocol")
                        return
                    if len(buffer) < HEADER.size + length:
                        break
                    payload = buffer[HEADER.size:HEADER.size + length]
                    buffer = buffer[HEADER.size + length:]
                    channel.received.append((time.monotonic() - (channel.connected_at or 0), kind, payload))
                    if kind == Kind.HANGUP:
                        self._hangup(channel, 16, "agent")
                        return
        except (ConnectionError, OSError):
            pass
        if channel.redirected_to is None and channel.hangup_cause is None:
            self._hangup(channel, 16, "agent")  # the server closed: AudioSocket() fails, the call hangs up

    # -- actions ------------------------------------------------------------------------------
    def redirect(self, channel: Channel, context: str, exten: str, priority: str) -> None:
        channel.redirected_to = (context, exten, priority)
        channel.context, channel.exten = context, exten
        self._end_audiosocket(channel, "redirect")  # the async goto ends AudioSocket(): its socket closes
        self._channel_event("Newexten", channel, Extension=exten, Application="Queue", AppData="support")

    async def originate(self, session: "_AmiSession", fields: dict) -> None:
        action_id = fields.get("ActionID")
        variables = fields.get("Variable", [])
        variables = dict(v.split("=", 1) for v in (variables if isinstance(variables, list) else [variables]) if "=" in v)
        target = fields.get("Channel", "")
        number = target.split("/", 1)[-1].split("@", 1)[0]
        outcome, planned_audio = self.originate_plan.get(number, (self.originate_outcome, self.originate_audio))
        if outcome == "never":
            return
        await asyncio.sleep(0.2)
        channel = self._new_channel(fields.get("CallerID", ""), fields.get("Exten", "s"),
                                    tech=target.split("@")[0] if "/" in target else "PJSIP/out")
        channel.context = fields.get("Context", "")
        base = {"Event": "OriginateResponse", "ActionID": action_id, "Channel": channel.name,
                "Context": channel.context, "Exten": channel.exten, "Application": "", "Data": "",
                "Uniqueid": channel.uniqueid, "CallerIDNum": "<unknown>", "CallerIDName": "<unknown>"}
        if outcome != "answered":
            reason = {"busy": "5", "no_answer": "3", "congestion": "8"}.get(outcome, "0")
            self._hangup(channel, 17 if outcome == "busy" else 19, "callee")
            session.event({**base, "Response": "Failure", "Reason": reason})
            return
        for name, value in variables.items():
            self._set_var(channel, name, value)
        session.event({**base, "Response": "Success", "Reason": "4"})
        audio = planned_audio if planned_audio is not None else np.zeros(8000, np.float32)
        await self._audiosocket(channel, variables.get(self.uuid_variable, str(uuidlib.uuid4())), audio, 8.0, [])


class _AmiSession:
    def __init__(self, asterisk: FakeAsterisk, writer: asyncio.StreamWriter):
        self.asterisk = asterisk
        self.writer = writer
        self.user: ManagerUser | None = None
        self.events_on: set | None = None  # classes the Login's Events asked for
        self.closed = False

    def send(self, fields: dict) -> None:
        if self.closed or self.writer.is_closing():
            return
        lines = []
        for key, value in fields.items():
            if value is None:
                continue
            for v in value if isinstance(value, list) else [value]:
                lines.append(f"{key}: {v}")
        self.writer.write((EOL.join(lines) + EOL + EOL).encode())

    def event(self, fields: dict) -> None:
        if self.user is None:
            return
        cls = EVENT_CLASS.get(fields.get("Event", ""), "call")
        wanted = self.user.read if self.events_on is None else self.user.read & self.events_on
        if cls in wanted or cls == "system":
            self.send({"Event": fields["Event"], "Privilege": f"{cls},all",
                       **{k: v for k, v in fields.items() if k != "Event"}})

    def close(self) -> None:
        self.closed = True
        if not self.writer.is_closing():
            self.writer.close()

    def reply(self, fields: dict, response: str = "Success", **extra) -> None:
        self.send({"Response": response, "ActionID": fields.get("ActionID"), **extra})

    async def handle(self, fields: dict) -> None:
        ast = self.asterisk
        action = fields.get("Action")
        ast.actions.append(fields)
        if not action:
            self.reply(fields, "Error", Message="Missing action in request")
            return
        name = action.lower()
        if name == "login":
            user = ast.users.get(fields.get("Username", ""))
            if user is None or user.secret != fields.get("Secret"):
                self.reply(fields, "Error", Message="Authentication failed")
                await asyncio.sleep(0)
                self.close()  # manager.c ends the session after a failed login
                return
            self.user = user
            events = str(fields.get("Events", "on")).lower()
            self.events_on = None if events == "on" else set() if events == "off" else set(events.split(","))
            self.reply(fields, Message="Authentication accepted")
            self.event({"Event": "FullyBooted", "Status": "Fully Booted", "Uptime": "100", "LastReload": "100"})
            return
        if self.user is None:
            self.reply(fields, "Error", Message="Permission denied")
            return
        canonical = next((a for a in ACTION_CLASS if a.lower() == name), None)
        if canonical is None:
            self.reply(fields, "Error", Message="Invalid/unknown command")
            return
        needed = ACTION_CLASS[canonical]
        if needed and not (needed & self.user.write):
            self.reply(fields, "Error", Message="Permission denied")
            return
        if not ast.respond and canonical != "Logoff":
            return
        channel = ast.channels.get(fields.get("Channel", ""))
        alive = channel is not None and channel.hangup_cause is None
        if canonical == "Ping":
            self.reply(fields, Ping="Pong", Timestamp=f"{time.time():.6f}")
        elif canonical == "Logoff":
            self.send({"Response": "Goodbye", "ActionID": fields.get("ActionID"), "Message": "Thanks for all the fish."})
            self.close()
        elif canonical == "Redirect":
            if not alive or channel.redirected_to is not None:
                self.reply(fields, "Error", Message="Channel not existent")
                return
            ast.redirect(channel, fields.get("Context", ""), fields.get("Exten", ""), fields.get("Priority", "1"))
            self.reply(fields, Message="Redirect successful")
        elif canonical == "BlindTransfer":
            # a channel inside AudioSocket() is in no bridge: Asterisk refuses (ast_bridge_transfer_blind)
            self.reply(fields, "Error", Message="Transfer failed")
        elif canonical == "Setvar":
            if not alive:
                self.reply(fields, "Error", Message="No such channel")
                return
            ast._set_var(channel, fields.get("Variable", ""), fields.get("Value", ""))
            self.reply(fields, Message="Variable Set")
        elif canonical == "Getvar":
            if not alive:
                self.reply(fields, "Error", Message="No such channel")
                return
            var = fields.get("Variable", "")
            self.reply(fields, Variable=var, Value=channel.variables.get(var, ""))
        elif canonical == "Hangup":
            if not alive:
                self.reply(fields, "Error", Message="No such channel")
                return
            ast._hangup(channel, int(fields.get("Cause", "16") or 16), "ami")
            self.reply(fields, Message="Channel Hungup")
        elif canonical == "Status":
            self.reply(fields, EventList="start", Message="Channel status will follow")
            wanted = [v.strip() for v in str(fields.get("Variables", "")).split(",") if v.strip()]
            live = [c for c in ast.channels.values() if c.hangup_cause is None]
            for c in live:
                variables = [f"{v}={c.variables[v]}" for v in wanted if v in c.variables]
                self.send({"Event": "Status", "Privilege": "Call", "ActionID": fields.get("ActionID"),
                           "Channel": c.name, "ChannelState": "6", "ChannelStateDesc": c.state,
                           "CallerIDNum": c.caller_id, "Context": c.context, "Exten": c.exten, "Priority": "1",
                           "Uniqueid": c.uniqueid, "Linkedid": c.uniqueid, "Variable": variables or None})
            self.send({"Event": "StatusComplete", "ActionID": fields.get("ActionID"), "EventList": "Complete",
                       "ListItems": str(len(live)), "Items": str(len(live))})
        elif canonical == "Originate":
            if str(fields.get("Async", "")).lower() in ("true", "yes", "1"):
                self.reply(fields, Message="Originate successfully queued")
                ast._spawn(ast.originate(self, fields))
            else:  # a synchronous Originate answers when the call has been placed
                await ast.originate(self, fields)
                self.reply(fields, Message="Originate successfully queued")
