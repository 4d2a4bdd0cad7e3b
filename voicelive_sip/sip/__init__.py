"""The sans-I/O SIP core: messages, URIs, framing, digest auth, transactions, dialogs, the transaction user.

Nothing here reads a clock or a socket: every time-dependent call takes `now` (see docs/architecture.md).
"""

from ..errors import LocalProtocolError, SipParseError
from .admission import Admission, Verdict
from .auth import (
    AuthAnswer,
    DigestAuthError,
    DigestAuthFailed,
    DigestClient,
    DigestServer,
    VerifyOutcome,
    VerifyResult,
)
from .binding import RegistrationBinding, RegistrationChanged, RegistrationState
from .call_state import TRANSITIONS, CallState, next_state
from .dialog import Dialog, DialogId, DialogState, DialogTable, new_tag
from .framing import StreamFramer
from .glare import ReofferAttempts, glare_backoff
from .guard import AuthGuard, Ban, BanSubject
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
from .session_timer import SessionTimer, TimerAction, parse_session_expires
from .transaction import State, Timers, TransactionLayer, new_branch
from .uac import ack_for_2xx, cancel_for, new_request
from .uas import MergedRequests, Refusal, precheck
from .uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "TRANSITIONS",
    "AbsoluteUri",
    "Admission",
    "AuthAnswer",
    "AuthGuard",
    "Ban",
    "BanSubject",
    "CSeq",
    "CallState",
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
    "MergedRequests",
    "Message",
    "NameAddress",
    "Refusal",
    "RegistrationBinding",
    "RegistrationChanged",
    "RegistrationState",
    "ReofferAttempts",
    "Request",
    "Response",
    "SessionTimer",
    "SipParseError",
    "SipUri",
    "State",
    "StreamFramer",
    "TelUri",
    "TimerAction",
    "Timers",
    "TransactionLayer",
    "Uri",
    "Verdict",
    "VerifyOutcome",
    "VerifyResult",
    "Via",
    "ack_for_2xx",
    "cancel_for",
    "error_response",
    "glare_backoff",
    "make_response",
    "new_branch",
    "new_request",
    "new_tag",
    "next_state",
    "parse_message",
    "parse_session_expires",
    "parse_uri",
    "precheck",
    "reason_phrase",
    "request_problem",
]
