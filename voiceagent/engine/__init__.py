"""The per-call engine: a session conducting small stages (engine/session.py), and `run_call`,
the one way every channel runs a call (engine/run.py)."""

from .context import CallContext, SessionOptions
from .run import Channel, run_call
from .session import CallSession

__all__ = ["CallContext", "CallSession", "Channel", "SessionOptions", "run_call"]
