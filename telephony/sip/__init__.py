"""SIP (RFC 3261) for the agent's phone leg, layered like the protocol itself.

This package's message layer is sans-IO: `message` turns bytes into `SipRequest`/`SipResponse`
objects and back (one datagram with `parse_message`, a TCP/TLS byte stream with `StreamParser`),
`address` parses the URIs and address headers those messages carry, and `auth` does HTTP digest
authentication. None of them does I/O, keeps timers or imports asyncio, so the transaction,
dialog and user-agent layers built on them (and the tests) can drive them with plain bytes.

The names of these three modules are re-exported here; importing the package loads nothing
else (the layers above are imported from their own modules).
"""

from .address import AddressError, NameAddress, SipUri, UnsupportedSchemeError, Via, split_header_list
from .auth import Challenge, DigestServer, authorization
from .message import (
    COMPACT,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_MESSAGE_BYTES,
    REASONS,
    Headers,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamParser,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)

__all__ = [
    "AddressError",
    "COMPACT",
    "Challenge",
    "DigestServer",
    "Headers",
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_MESSAGE_BYTES",
    "NameAddress",
    "REASONS",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamParser",
    "UnsupportedSchemeError",
    "Via",
    "authorization",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "split_header_list",
]
