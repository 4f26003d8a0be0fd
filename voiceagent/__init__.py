"""voiceagent: an offline-first call-center voice agent for e-commerce customer service."""

__version__ = "0.1.0"
