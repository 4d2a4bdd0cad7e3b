"""Requests a UAC builds outside a transaction's own rules: new out-of-dialog requests, CANCEL, the 2xx ACK.

Sans-I/O: messages in, messages out. The ACK of a 2xx is built here and only here (RFC 3261 §13.2.2.4).
"""

from __future__ import annotations

from .dialog import Dialog
from .headers import CSeq, NameAddress, Via
from .message import Request
from .uri import Uri


def new_request(
    method: str, uri: Uri, *, to: NameAddress, from_: NameAddress, call_id: str, seq: int
) -> Request:
    """An out-of-dialog request (RFC 3261 §8.1.1) without Via (the transport layer adds it)."""
    request = Request(method, uri)
    h = request.headers
    h.add("Max-Forwards", 70)
    h.add("From", from_)
    h.add("To", to)
    h.add("Call-ID", call_id)
    h.add("CSeq", CSeq(seq, method))
    return request


def cancel_for(invite: Request) -> Request:
    """CANCEL (RFC 3261 §9.1): the INVITE's Request-URI, Call-ID, From, To, CSeq number and top Via."""
    cancel = Request("CANCEL", invite.uri)
    cancel.headers.add("Via", invite.top_via)
    for route in invite.headers.get_all("Route"):
        cancel.headers.add("Route", route)
    cancel.headers.add("Max-Forwards", 70)
    cancel.headers.add("From", invite.from_)
    cancel.headers.add("To", invite.headers.get("To"))
    cancel.headers.add("Call-ID", invite.call_id)
    cancel.headers.add("CSeq", CSeq(invite.cseq.seq, "CANCEL"))
    return cancel


def ack_for_2xx(dialog: Dialog, invite_seq: int, via: Via) -> Request:
    """The ACK of a 2xx to our INVITE: in the dialog, the INVITE's CSeq number, its own Via (§13.2.2.4)."""
    ack = dialog.create_ack(invite_seq)
    ack.headers.prepend("Via", via)
    return ack


__all__ = ["ack_for_2xx", "cancel_for", "new_request"]
