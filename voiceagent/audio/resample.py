"""Sample-rate conversion (soxr: high quality, fast, streaming-capable). Defined in
`telephony.audio`, where the transports can use it without importing the agent; re-exported here."""

from telephony.audio import StreamResampler, resample

__all__ = ["StreamResampler", "resample"]
