"""The asyncio glue over the sans-I/O SIP core: transports, the user agent, calls and registrations."""

from ..errors import CallFailed, RegistrationFailed
from ..sip.call_state import (
    Answered,
    CallEnded,
    CallEvent,
    CallState,
    InfoDtmf,
    LocalMedia,
    MediaUpdated,
    ReferProgress,
    Ringing,
    SessionRefreshed,
    TransferRequested,
)
from .agent import UserAgent
from .call import Call, CallTable
from .incoming_call import IncomingCall
from .options import UserAgentOptions, advertised_address_problems
from .outgoing_call import OutgoingCall
from .registration import Registration, RegistrationChanged, RegistrationState

__all__ = [
    "Answered",
    "Call",
    "CallEnded",
    "CallEvent",
    "CallFailed",
    "CallState",
    "CallTable",
    "IncomingCall",
    "InfoDtmf",
    "LocalMedia",
    "MediaUpdated",
    "OutgoingCall",
    "ReferProgress",
    "Registration",
    "RegistrationChanged",
    "RegistrationFailed",
    "RegistrationState",
    "Ringing",
    "SessionRefreshed",
    "TransferRequested",
    "UserAgent",
    "UserAgentOptions",
    "advertised_address_problems",
]
