"""Property tests: the parser never fails with anything but SipParseError; parse(serialize(m)) == m."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicelive_sip.sip import (
    CSeq,
    NameAddress,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamFramer,
    Via,
    parse_message,
)

DATA = Path(__file__).parent.parent / "data" / "rfc4475"
SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
HOST = st.one_of(
    st.builds(
        lambda labels, top: ".".join([*labels, top]),
        st.lists(LABEL, max_size=3),
        st.from_regex(r"[a-z]{2,6}", fullmatch=True),
    ),
    st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *[st.integers(0, 255)] * 4),
)
USER = st.from_regex(r"[a-zA-Z0-9+_.!~*'()&=$,;?/-]{1,16}", fullmatch=True)
PORT = st.one_of(st.none(), st.integers(1, 65535))
URI_PARAMS = st.lists(
    st.tuples(
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
    ),
    max_size=3,
).map(tuple)
SIP_URI = st.builds(
    SipUri,
    host=HOST,
    user=st.one_of(st.none(), USER),
    port=PORT,
    params=URI_PARAMS,
    scheme=st.sampled_from(["sip", "sips"]),
)
DISPLAY = st.one_of(
    st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
)
TAG = st.from_regex(r"[a-zA-Z0-9]{1,12}", fullmatch=True)
ADDRESS = st.builds(
    lambda uri, name, tag: NameAddress(uri, name, (("tag", tag),) if tag else ()),
    SIP_URI,
    DISPLAY,
    st.one_of(st.none(), TAG),
)
VIA = st.builds(
    lambda transport, host, port, branch: Via(transport, host, port, (("branch", "z9hG4bK" + branch),)),
    st.sampled_from(["UDP", "TCP", "TLS"]),
    HOST,
    PORT,
    TAG,
)
VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30).map(
    str.strip
)
EXTRA = st.lists(st.tuples(st.from_regex(r"X-[A-Za-z]{1,10}", fullmatch=True), VALUE), max_size=4)
BODY = st.binary(max_size=200)


def _common(
    via: list[Via],
    from_: NameAddress,
    to: NameAddress,
    call_id: str,
    seq: int,
    method: str,
    extra: list[tuple[str, str]],
) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = [("Via", v) for v in via]
    fields += [
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", CSeq(seq, method)),
        ("Max-Forwards", 70),
    ]
    fields += extra
    return fields


REQUESTS = st.builds(
    lambda method, uri, via, f, t, cid, seq, extra, body: Request(
        method, uri, _common(via, f, t, cid, seq, method, extra), body
    ),
    TOKEN,
    SIP_URI,
    st.lists(VIA, min_size=1, max_size=3),
    ADDRESS,
    ADDRESS,
    TAG,
    st.integers(0, 2**31 - 1),
    EXTRA,
    BODY,
)
RESPONSES = st.builds(
    lambda code, reason, via, f, t, cid, seq, extra, body: Response(
        code, reason, _common(via, f, t, cid, seq, "INVITE", extra), body
    ),
    st.integers(100, 699),
    VALUE,
    st.lists(VIA, min_size=1, max_size=3),
    ADDRESS,
    ADDRESS,
    TAG,
    st.integers(0, 2**31 - 1),
    EXTRA,
    BODY,
)


@given(st.binary(max_size=2000))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [b"\r\n", b" ", b";", b",", b"<", b">", b'"', b":", b"\x00", b"%", b"@", b"\r\n "]
                )
            )
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == "dup" and data:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


@given(mutated())
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_messages_raise_only_sip_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    # Whatever parses must serialize and parse back to itself, and typed access never leaks other errors.
    assert parse_message(message.serialize()) == message
    for attribute in ("via", "contact", "route", "record_route", "allow", "supported", "require"):
        with contextlib.suppress(SipParseError):
            getattr(message, attribute)


@given(mutated(), st.integers(1, 50))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_stream_framer_raises_only_sip_parse_error(data: bytes, chunk: int) -> None:
    framer = StreamFramer()
    try:
        for i in range(0, len(data), chunk):
            framer.feed(data[i : i + chunk])
    except SipParseError:
        pass


@given(st.one_of(REQUESTS, RESPONSES))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_parse_of_serialize_is_identity(message: Request | Response) -> None:
    parsed = parse_message(message.serialize())
    assert parsed == message
    assert parsed.via == message.via
    assert parsed.from_ == message.from_ and parsed.to == message.to
    assert parsed.from_.display_name == message.from_.display_name
    assert parsed.cseq == message.cseq
