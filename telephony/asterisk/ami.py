"""Call control over the Asterisk Manager Interface (AMI), on panoramisk's asyncio client.

What the agent needs from AMI, and nothing more (manager.conf can give this user `read = call,dialplan`
and `write = call,originate`):

- which channel an AudioSocket call is: the dialplan sets the call's UUID in a channel variable
  (`Set(VOICEAGENT_UUID=${UUID()})`) before AudioSocket(), and Asterisk reports it in a VarSet event
  with the channel's name, unique id and caller ID. A UUID whose event was missed (the AMI link was
  down) is looked up with the Status action.
- Redirect (or BlindTransfer) of that channel to a dialplan place, Setvar, Hangup.
- Originate for outbound calls, with the outcome from the OriginateResponse event (answered, busy,
  no answer...).

panoramisk keeps the connection and matches responses to actions by ActionID. Around it this module
adds: backoff when reconnecting (panoramisk retries every 2 s forever, a bad password included);
no replay of actions after a reconnect (panoramisk re-sends unanswered ones: a Redirect replayed
minutes later would move a caller the agent has since told the transfer failed); a time limit on
every action; and clear errors (AmiUnavailable, AmiTimeout, AmiError with Asterisk's message).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from panoramisk import Manager

log = logging.getLogger(__name__)

# AST_CONTROL_* values Asterisk reports as an Originate's Reason (include/asterisk/frame.h)
ORIGINATE_REASONS = {0: "failed", 1: "no_answer", 3: "no_answer", 4: "answered", 5: "busy", 8: "congestion"}
# Reason 1 is AST_CONTROL_HANGUP (the far end hung up or rejected before answering), 3 RINGING (rang
# until the timeout), 8 CONGESTION (no route, trunk down), 0 no such extension or channel


class AmiError(Exception):
    """Asterisk answered an action with an error (the message is Asterisk's)."""


class AmiUnavailable(AmiError):
    """Not connected and logged in to AMI right now."""


class AmiTimeout(AmiError):
    """No response to an action within its time limit."""


@dataclass(frozen=True)
class ChannelInfo:
    channel: str  # e.g. PJSIP/trunk-00000001
    uniqueid: str
    caller_id: str = ""
    exten: str = ""
    context: str = ""
    linkedid: str = ""


@dataclass(frozen=True)
class OriginateResult:
    outcome: str  # answered, busy, no_answer, congestion, failed, timeout, error
    reason: int | None = None  # Asterisk's Reason code
    channel: str = ""
    uniqueid: str = ""
    message: str = ""

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"


class _Manager(Manager):
    """panoramisk's Manager with our reconnect policy and no action replay."""

    def __init__(self, client: "AmiClient", **config):
        super().__init__(**config)
        self.client = client

    def connection_made(self, f):
        if f.cancelled():
            return
        exc = f.exception()
        if exc is not None:
            self.client._connect_failed(exc)
            return
        super().connection_made(f)

    def login(self, future):
        ok = super().login(future)
        self.client._login_result(ok, future.result())
        return ok

    def connection_lost(self, exc):
        self._connected = False
        self.authenticated = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self._fail_unanswered()
        self.client._connection_lost(exc)

    def _fail_unanswered(self) -> None:
        """Actions sent but not answered when the link went: their callers hear so now, and they
        are not replayed."""
        for action in self.awaiting_actions:
            if not action.future.done():
                action.future.set_exception(AmiUnavailable("the AMI connection was lost before the response"))
        self.awaiting_actions.clear()

    async def send_awaiting_actions(self, *_):
        self.awaiting_actions.clear()  # never replay: see the module's docstring


class AmiClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 5038, username: str = "", secret: str = "",
                 uuid_variable: str = "VOICEAGENT_UUID", action_timeout_s: float = 10.0,
                 reconnect_min_s: float = 1.0, reconnect_max_s: float = 30.0, events: str = "call,dialplan",
                 ping_s: int = 20):
        self.host, self.port = host, port
        self.username = username
        self.uuid_variable = uuid_variable
        self.action_timeout_s = action_timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.manager = _Manager(self, host=host, port=port, username=username, secret=secret, events=events,
                                ping_delay=ping_s, ping_interval=ping_s, reconnect_timeout=reconnect_max_s,
                                forgetable_actions=())
        self.manager.register_event("VarSet", self._on_varset)
        self.manager.register_event("Hangup", self._on_hangup)
        self.manager.register_event("Shutdown", self._on_shutdown)
        self.channels: dict[str, ChannelInfo] = {}  # UUID -> channel
        self.logged_in = asyncio.Event()
        self.last_error: str | None = None
        self.counters = {"connects": 0, "logins": 0, "login_failures": 0, "disconnects": 0, "actions": 0,
                         "action_errors": 0, "action_timeouts": 0}
        self._attempt = 0
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._uuid_waiters: dict[str, asyncio.Event] = {}
        self._hangup_waiters: dict[str, list[asyncio.Future]] = {}
        self._connected_since: float | None = None

    # -- the connection -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect and log in, in the background; reconnect with backoff whenever the link drops."""
        self.manager.loop = asyncio.get_running_loop()
        self._connect()

    async def wait_ready(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self.logged_in.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self.ready:
            try:
                await self.action({"Action": "Logoff"}, timeout_s=1.0)
            except AmiError:
                pass
        self.logged_in.clear()
        self.manager.close()

    @property
    def ready(self) -> bool:
        return self.logged_in.is_set()

    def _connect(self) -> None:
        self._retry = None
        if self._closed:
            return
        self.counters["connects"] += 1
        self.manager.connect()

    def _schedule_reconnect(self) -> None:
        if self._closed or self._retry is not None:
            return
        delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** self._attempt)
        self._attempt += 1
        log.info("AMI: reconnecting to %s:%d in %.0f s", self.host, self.port, delay)
        self._retry = asyncio.get_running_loop().call_later(delay, self._connect)

    def _connect_failed(self, exc: BaseException) -> None:
        self.last_error = f"cannot connect to {self.host}:{self.port}: {exc}"
        if self._attempt == 0 or self._attempt % 5 == 0:
            log.warning("AMI: %s", self.last_error)
        self._schedule_reconnect()

    def _login_result(self, ok: bool, response) -> None:
        if ok:
            self._attempt = 0
            self.last_error = None
            self.counters["logins"] += 1
            self._connected_since = time.monotonic()
            self.logged_in.set()
            log.info("AMI: logged in to %s:%d as %s", self.host, self.port, self.username)
            asyncio.get_running_loop().create_task(self._resync())
        else:
            self.counters["login_failures"] += 1
            self.last_error = f"login as {self.username!r} refused: {getattr(response, 'message', '') or response}"
            log.error("AMI: %s (check manager.conf and [asterisk] ami_username/ami_secret)", self.last_error)
            self.manager.close()  # Asterisk closes too; either way, try again later
            self.manager._fail_unanswered()
            self._connection_lost(None)

    def _connection_lost(self, exc) -> None:
        was_ready = self.logged_in.is_set()
        self.logged_in.clear()
        if was_ready and not self._closed:
            self.counters["disconnects"] += 1
            log.warning("AMI: connection to %s:%d lost%s; calls keep their media", self.host, self.port,
                        f" ({exc})" if exc else "")
        self._schedule_reconnect()

    def _on_shutdown(self, manager, event) -> None:
        log.warning("AMI: Asterisk is shutting down (%s)", event.get("Shutdown", ""))

    # -- events -------------------------------------------------------------------------------
    def _on_varset(self, manager, event) -> None:
        if event.get("Variable") != self.uuid_variable:
            return
        key = str(event.get("Value", "")).strip().lower()
        if not key:
            return
        self.channels[key] = ChannelInfo(event.get("Channel", ""), event.get("Uniqueid", ""),
                                         event.get("CallerIDNum", ""), event.get("Exten", ""),
                                         event.get("Context", ""), event.get("Linkedid", ""))
        waiter = self._uuid_waiters.pop(key, None)
        if waiter is not None:
            waiter.set()

    def _on_hangup(self, manager, event) -> None:
        channel = event.get("Channel", "")
        for key, info in list(self.channels.items()):
            if info.channel == channel:
                del self.channels[key]
        for future in self._hangup_waiters.pop(channel, []):
            if not future.done():
                future.set_result(event.get("Cause-txt", "") or event.get("Cause", ""))

    async def _resync(self) -> None:
        """After (re)connecting: learn the UUIDs of calls already up (their VarSet may have passed
        while the link was down)."""
        try:
            await self.status_variables()
        except AmiError as exc:
            log.info("AMI: channel status not read after login: %s", exc)

    async def status_variables(self) -> int:
        """Read every channel's UUID variable with the Status action; returns how many were found."""
        replies = await self.action({"Action": "Status", "Variables": self.uuid_variable}, as_list=True)
        found = 0
        for event in replies if isinstance(replies, list) else [replies]:
            if event.get("Event") != "Status":
                continue
            values = event.get("Variable", [])
            for item in values if isinstance(values, list) else [values]:
                name, _, value = str(item).partition("=")
                if name == self.uuid_variable and value:
                    self.channels[value.strip().lower()] = ChannelInfo(
                        event.get("Channel", ""), event.get("Uniqueid", ""), event.get("CallerIDNum", ""),
                        event.get("Exten", ""), event.get("Context", ""), event.get("Linkedid", ""))
                    waiter = self._uuid_waiters.pop(value.strip().lower(), None)
                    if waiter is not None:
                        waiter.set()
                    found += 1
        return found

    async def channel_for(self, call_uuid: str, wait_s: float = 2.0) -> ChannelInfo | None:
        """The channel whose UUID variable is `call_uuid`: from the events, waiting up to `wait_s`
        (the VarSet event and the AudioSocket connection race), then by asking (Status)."""
        key = str(call_uuid).lower()
        if key in self.channels or not self.ready:
            # AMI down: no event can come, and the caller must not wait in silence for one
            return self.channels.get(key)
        waiter = self._uuid_waiters.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(waiter.wait(), wait_s)
        except asyncio.TimeoutError:
            if self.ready:
                try:
                    await self.status_variables()
                except AmiError as exc:
                    log.info("AMI: Status for %s failed: %s", key, exc)
        finally:
            self._uuid_waiters.pop(key, None)
        return self.channels.get(key)

    # -- actions ------------------------------------------------------------------------------
    async def action(self, fields: dict, timeout_s: float | None = None, as_list: bool | None = None):
        """Send one action; its response (or, for a list, its events). Raises AmiUnavailable,
        AmiTimeout, AmiError."""
        if not self.ready or self.manager.protocol is None:
            raise AmiUnavailable(self.last_error or f"not connected to AMI at {self.host}:{self.port}")
        self.counters["actions"] += 1
        future = self.manager.send_action(dict(fields), as_list=as_list)
        limit = self.action_timeout_s if timeout_s is None else timeout_s
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), limit)
        except asyncio.TimeoutError:
            self.counters["action_timeouts"] += 1
            future.cancel()
            raise AmiTimeout(f"no response to {fields.get('Action')} within {limit:.0f} s") from None
        first = reply[0] if isinstance(reply, list) and reply else reply
        if first is not None and first.get("Response") in ("Error", "Failure", "Fail"):
            self.counters["action_errors"] += 1
            raise AmiError(f"{fields.get('Action')}: {first.get('Message') or first.get('Response')}")
        return reply

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None:
        await self.action({"Action": "Redirect", "Channel": channel, "Context": context, "Exten": exten,
                           "Priority": str(priority)})

    async def blind_transfer(self, channel: str, context: str, exten: str) -> None:
        await self.action({"Action": "BlindTransfer", "Channel": channel, "Context": context, "Exten": exten})

    async def setvar(self, channel: str, variable: str, value: str) -> None:
        await self.action({"Action": "Setvar", "Channel": channel, "Variable": variable, "Value": value})

    async def hangup(self, channel: str, cause: int = 16) -> None:
        await self.action({"Action": "Hangup", "Channel": channel, "Cause": str(cause)})

    async def originate(self, channel: str, context: str, exten: str, priority: int = 1,
                        variables: dict[str, str] | None = None, caller_id: str = "",
                        ring_timeout_s: float = 30.0) -> OriginateResult:
        """Place a call: Asterisk dials `channel` and, once answered, runs the dialplan at
        context/exten/priority. Asynchronous Originate, so AMI stays usable while it rings; the
        result comes from the OriginateResponse event."""
        fields = {"Action": "Originate", "Channel": channel, "Context": context, "Exten": exten,
                  "Priority": str(priority), "Timeout": str(int(ring_timeout_s * 1000)), "Async": "true"}
        if caller_id:
            fields["CallerID"] = caller_id
        if variables:
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        try:
            reply = await self.action(fields, timeout_s=ring_timeout_s + self.action_timeout_s)
        except AmiTimeout as exc:
            return OriginateResult("timeout", message=str(exc))
        except AmiUnavailable:
            raise
        except AmiError as exc:
            return OriginateResult("error", message=str(exc))
        events = reply if isinstance(reply, list) else [reply]
        final = next((e for e in events if e.get("Event") == "OriginateResponse"), None)
        if final is None:
            return OriginateResult("error", message="no OriginateResponse event")
        try:
            reason = int(final.get("Reason", "0") or 0)
        except ValueError:
            reason = 0
        outcome = "answered" if final.get("Response") == "Success" else ORIGINATE_REASONS.get(reason, "failed")
        if outcome == "answered" and final.get("Response") != "Success":
            outcome = "failed"
        return OriginateResult(outcome, reason, final.get("Channel", ""), final.get("Uniqueid", ""),
                               final.get("Message", "") or final.get("Response", ""))

    def status(self) -> dict:
        return {"host": f"{self.host}:{self.port}", "logged_in": self.ready, "last_error": self.last_error,
                "channels_known": len(self.channels),
                "connected_for_s": round(time.monotonic() - self._connected_since, 1)
                if self.ready and self._connected_since else None, **self.counters}
