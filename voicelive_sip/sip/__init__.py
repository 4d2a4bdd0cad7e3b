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
from .dialog import Dialog, DialogId, DialogState, DialogTable, new_tag
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
from .transaction import State, Timers, TransactionLayer, new_branch
from .uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "AbsoluteUri",
    "AuthAnswer",
    "CSeq",
    "Dialog",
    "DialogId",
    "DialogState",
    "DialogTable",
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
    "State",
    "StreamFramer",
    "TelUri",
    "Timers",
    "TransactionLayer",
    "Uri",
    "VerifyOutcome",
    "VerifyResult",
    "Via",
    "error_response",
    "make_response",
    "new_branch",
    "new_tag",
    "parse_message",
    "parse_uri",
    "reason_phrase",
    "request_problem",
]
