"""One way to run a call, whatever brought it: SIP, AudioSocket, the browser, a file, the dialer.

The channel hands over its leg and says what it knows (the caller, the options); `run_call` runs
the session, lets the channel release its line (a BYE, a hang-up) and describe its side of the call
for the record (peer, codec, media counters, transfers), then keeps the record: in the process's
list and in the store, off the event loop so other calls go on. A failure to store is logged, never
raised into the channel.

    channel ─► leg + SessionOptions + Channel ─► run_call ─► CallSession.run() ─► record ─► CallStore
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..events import Event
from ..legs import CallLeg
from ..record import CallRecord
from ..runtime import Runtime
from ..store import CallStore
from .context import SessionOptions
from .session import CallSession

log = logging.getLogger(__name__)


@dataclass
class Channel:
    """What a transport adds to the engine's call."""

    kind: str  # "sip", "audiosocket", "webrtc", "file", ...
    describe: Callable[[], dict] | None = None  # its side of the call, for record.channel (read after the call)
    started: Callable[[CallSession], None] | None = None  # the session exists (tell the peer its call id)
    release: Callable[[], Awaitable[None]] | None = None  # the call is over for the agent: free the line
    observers: tuple[Callable[[Event], None], ...] = ()
    records: list[CallRecord] | None = None  # the process's finished calls (newest last), for tests and status


async def run_call(runtime: Runtime, leg: CallLeg, options: SessionOptions, channel: Channel,
                   store: CallStore | None = None, call_id: str | None = None) -> CallRecord:
    if options.screen is not None:  # an outbound call: who answered decides whether the agent speaks
        try:
            screened, ended = await options.screen(leg)
        except Exception:  # someone may be there: the agent speaks rather than hang up on them
            log.exception("screening the answered call failed: the agent speaks")
            screened, ended = leg, None
        if screened is None:
            return await _ended_before_the_agent(runtime, leg, options, channel, store, call_id, ended)
        leg = screened
    from ..ops import live as operators  # the console's view of the call, when the process has one

    hub = operators.current()
    call_id = call_id or uuid.uuid4().hex[:12]
    observers = list(channel.observers)
    watched, record = None, None
    if hub is not None:
        kind = "campaign" if options.marketing is not None else channel.kind
        watched = hub.begin(call_id, kind, leg, options.customer_id, options.language)
        leg = watched.leg  # listen-in, takeover and the recording tap the call here
        observers.append(hub.observer(watched))
    activity = getattr(runtime, "call_activity", None)  # background speech synthesis waits while calls run
    if activity is not None:
        activity.begin()
    try:
        session = CallSession(runtime, leg, options, call_id=call_id, observers=observers,
                              on_handoff=store.save_handoff if store is not None else None)
        if watched is not None:
            watched.session = session
        if channel.started is not None:
            channel.started(session)
        try:
            record = await session.run()
        finally:
            await _release(channel, session.call_id)
        record = await _keep(record, channel, store)
    finally:
        if activity is not None:
            activity.end()
        if watched is not None:
            # whatever happened (a crash, a shutdown's cancel): the call leaves the console, its
            # recording is kept, its supervisors' connections close
            try:
                await asyncio.shield(hub.end(watched, record))
            except asyncio.CancelledError:
                pass  # cancelled again: the shielded filing goes on by itself
            except Exception:
                log.exception("call %s: the operator side could not file the call", call_id)
    return record


async def _release(channel: Channel, call_id: str) -> None:
    if channel.release is not None:
        try:
            await channel.release()
        except Exception:
            log.exception("call %s: releasing the %s line failed", call_id, channel.kind)


async def _keep(record: CallRecord, channel: Channel, store: CallStore | None) -> CallRecord:
    """The channel's side of the call on the record; the record in the process's list and the store."""
    if channel.describe is not None:
        record.channel = channel.describe()
    if channel.records is not None:
        channel.records.append(record)
    if store is not None:
        try:
            await asyncio.to_thread(store.save, record)
        except Exception:
            log.exception("call %s: storing the call failed", record.call_id)
    return record


async def _ended_before_the_agent(runtime: Runtime, leg: CallLeg, options: SessionOptions, channel: Channel,
                                  store: CallStore | None, call_id: str | None, reason: str | None) -> CallRecord:
    """The call was answered, but not by someone the agent talks to (a machine): a record all the same."""
    record = CallRecord(call_id or uuid.uuid4().hex[:12], options.language if options.language in ("zh", "en") else "",
                        options.customer_id, models=runtime.model_names())
    record.outcome.ended_by, record.outcome.end_reason = "agent", reason
    record.duration_s = round(leg.clock.now(), 3)
    if options.marketing is not None:
        record.campaign = options.marketing.as_record()
    await _release(channel, record.call_id)
    return await _keep(record, channel, store)
