"""Stream framing for TCP/TLS: arbitrary chunks in, whole messages out."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import Request, Response, SipParseError, StreamFramer

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
