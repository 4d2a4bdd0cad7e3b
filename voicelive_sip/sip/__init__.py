"""The sans-I/O SIP core: messages, URIs, framing, digest authentication, transactions and dialogs."""

from .auth import (
    AuthAnswer,
    DigestAuthError,
    DigestAuthFailed,
    DigestClient,
    DigestServer,
    VerifyOutcome,
    VerifyResult,
)
from .errors import LocalProtocolError, SipParseError
from .framing import StreamFramer
from .headers import CSeq, MediaType, NameAddress, Via
from .message import (
    MAX_MESSAGE_SIZE,
    Headers,
    Message,
    Request,
    Response,
    error_response,
    make_response,
    parse_message,
    reason_phrase,
    request_problem,
)
from .uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "AbsoluteUri",
    "AuthAnswer",
    "CSeq",
    "DigestAuthError",
    "DigestAuthFailed",
    "DigestClient",
    "DigestServer",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "Message",
    "NameAddress",
    "Request",
    "Response",
    "SipParseError",
    "SipUri",
    "StreamFramer",
    "TelUri",
    "Uri",
    "VerifyOutcome",
    "VerifyResult",
    "Via",
    "error_response",
    "make_response",
    "parse_message",
    "parse_uri",
    "reason_phrase",
    "request_problem",
]
