"""Stream framing for TCP/TLS: arbitrary chunks in, whole messages out."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import Request, Response, SipParseError, StreamFramer
from voicelive_sip.sip.message import error_response

BODY = b"v=0\r\n"
MSG1 = (
    b"INVITE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
    b"From: <sip:b@example.com>;tag=1\r\n"
    b"To: <sip:a@example.com>\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nContent-Length: 5\r\n\r\n" + BODY
)
MSG2 = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[object] = []
    for i in range(len(MSG1 + MSG2)):
        out.extend(framer.feed((MSG1 + MSG2)[i : i + 1]))
    assert [type(m) for m in out] == [Request, Response]
    assert isinstance(out[0], Request) and out[0].body == BODY
    assert framer.buffered == 0


def test_many_messages_in_one_chunk_with_keepalives() -> None:
    framer = StreamFramer()
    out = framer.feed(b"\r\n\r\n" + MSG1 + b"\r\n" + MSG2 + MSG1[:10])
    assert len(out) == 2
    assert framer.buffered == 10
    assert len(framer.feed(MSG1[10:])) == 1


def test_a_bad_message_that_frames_is_returned_as_an_error() -> None:
    bad = b"INVITE <sip:a@b> SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    out = StreamFramer().feed(bad + MSG2)
    assert isinstance(out[0], SipParseError) and isinstance(out[1], Response)


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\n",
    ],
)
def test_framing_errors(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


def test_header_section_over_the_limit() -> None:
    framer = StreamFramer(max_size=1024)
    with pytest.raises(SipParseError) as info:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-Pad: " + b"a" * 2000)
    assert info.value.status_code == 413


def test_pending_since_is_the_first_byte_of_the_incomplete_message() -> None:
    framer = StreamFramer()
    started = [framer.pending_since]
    framer.feed(b"\r\n\r\n", now=1.0)  # keep-alives leave nothing pending
    started.append(framer.pending_since)
    framer.feed(MSG1[:1], now=2.0)
    for i in range(1, 20):  # slowloris: more single bytes never move the start
        framer.feed(MSG1[i : i + 1], now=2.0 + i)
    started.append(framer.pending_since)
    assert len(framer.feed(MSG1[20:], now=30.0)) == 1
    started.append(framer.pending_since)
    assert started == [None, None, 2.0, None]


def test_pending_since_restarts_for_the_message_after_a_complete_one() -> None:
    framer = StreamFramer()
    framer.feed(MSG1[:10], now=1.0)
    assert len(framer.feed(MSG1[10:] + MSG2[:5], now=4.0)) == 1
    assert framer.pending_since == 4.0


def test_oversize_content_length_is_a_413_that_can_be_answered() -> None:
    head = MSG1.split(b"Content-Length")[0]
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(head + b"Content-Length: 70000\r\n\r\n")
    error = info.value
    assert (error.status_code, error.is_request) == (413, True)
    response = error_response(error)
    assert response is not None and response.status_code == 413
    assert response.headers.get_all("Via") == ["SIP/2.0/TCP h;branch=z9hG4bK1"]
    assert response.headers.get("Call-ID") == "1"


def test_an_eleven_digit_content_length_is_too_large_not_malformed() -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n")
    assert info.value.status_code == 413
    assert error_response(info.value) is None  # no Via: nowhere to send a response, just close


def test_oversize_header_section_keeps_the_headers_read_so_far() -> None:
    head = MSG1.split(b"Content-Length")[0]
    with pytest.raises(SipParseError) as info:
        StreamFramer(max_size=1024).feed(head + b"X-Pad: " + b"a" * 2000)
    response = error_response(info.value)
    assert response is not None and response.status_code == 413
    assert response.headers.get("CSeq") == "1 INVITE"
