"""Errors that reach the user as one clear line (CLI exit status 2), never as a traceback."""


class VoiceAgentError(Exception):
    """Base class: the message is meant for the operator, as is."""


class BadInput(VoiceAgentError):
    """The caller's audio or text, or a command-line argument, cannot be used."""


class ModelMissing(VoiceAgentError):
    """A configured model is not provisioned or its files are corrupt."""


class ConfigError(VoiceAgentError):
    """The configuration file is unreadable or names something that does not exist."""


class LlmUnavailable(VoiceAgentError):
    """The configured LLM endpoint is down, too slow, or answered with an error (status: its HTTP code)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
