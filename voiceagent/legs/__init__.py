"""Call legs: what a transport gives the session (audio in, audio out, hang-up, transfer)."""

from .base import CallLeg, Clock, DtmfDigit, LegClosed, LegWrapper, TransferResult
from .file import FileLeg
from .memory import MemoryLeg

__all__ = ["CallLeg", "Clock", "DtmfDigit", "FileLeg", "LegClosed", "LegWrapper", "MemoryLeg", "TransferResult"]
