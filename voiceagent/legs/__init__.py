"""Call legs: what a transport gives the session (audio in, audio out, hang-up, transfer)."""

from .base import CallLeg, Clock
from .file import FileLeg

__all__ = ["CallLeg", "Clock", "FileLeg"]
