"""Property tests: serialize/parse round trip, and arbitrary input fails only with SdpError."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from voicelive_sip.sdp import (
    Attribute,
    Connection,
    Line,
    LocalSdpSession,
    MediaDescription,
    NoCommonCodec,
    Origin,
    SdpError,
    SessionDescription,
    SrtpNotAcceptable,
    answer_offer,
)

TOKEN_CHARACTERS = string.ascii_letters + string.digits + "-._!#$%&'*+^`{|}~/"
tokens = st.text(TOKEN_CHARACTERS, min_size=1, max_size=12)
# One line of text with no trailing blank (the parser strips trailing blanks as sloppiness).
free_text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=30).filter(
    lambda text: not text or not text[-1].isspace()
)
attribute_names = st.text(TOKEN_CHARACTERS.replace("/", ""), min_size=1, max_size=12)
attributes = st.builds(Attribute, attribute_names, st.none() | free_text)
connections = st.builds(Connection, tokens, tokens, tokens)
origins = st.builds(Origin, tokens, tokens, st.integers(0, 2**64), tokens, tokens, tokens)
rtp_protos = st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "UDP/TLS/RTP/SAVPF"])
other_protos = st.sampled_from(["udptl", "UDP/BFCP", "TCP/MSRP"]) | tokens.filter(
    lambda proto: "RTP/" not in proto
)


def lines_of(types: str) -> st.SearchStrategy[Line]:
    return st.builds(Line, st.sampled_from(types), free_text)


@st.composite
def media_descriptions(draw: st.DrawFn, session_connection: bool) -> MediaDescription:
    proto = draw(rtp_protos | other_protos)
    if "RTP/" in proto:
        formats = draw(st.lists(st.integers(0, 127).map(str), max_size=6))
    else:
        formats = draw(st.lists(tokens, max_size=4))
    port = draw(st.integers(0, 65535))
    connection = draw(st.none() | connections)
    if connection is None and port != 0 and not session_connection:
        connection = draw(connections)
    # RFC 8866 §5 order: i= before c=, everything else after it.
    extra = draw(st.lists(lines_of("i"), max_size=1)) + draw(st.lists(lines_of("bkxy"), max_size=3))
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "image", "application"]) | tokens),
        port=port,
        proto=proto,
        formats=tuple(formats),
        port_count=draw(st.none() | st.integers(1, 99999)),
        connection=connection,
        attributes=tuple(draw(st.lists(attributes, max_size=6))),
        extra=tuple(extra),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(st.none() | connections)
    extra = draw(st.lists(lines_of("iuep"), max_size=3)) + draw(st.lists(lines_of("btrzkx"), max_size=3))
    return SessionDescription(
        origin=draw(origins),
        session_name=draw(
            st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=20)
        ),
        connection=connection,
        media=tuple(draw(st.lists(media_descriptions(connection is not None), max_size=4))),
        attributes=tuple(draw(st.lists(attributes, max_size=4))),
        extra=tuple(extra),
    )


@given(session_descriptions())
def test_parse_of_serialize_is_identity(description: SessionDescription) -> None:
    data = bytes(description)
    assert SessionDescription.parse(data) == description
    assert SessionDescription.parse(data.replace(b"\r\n", b"\n")) == description


@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_sdp_error(text: str) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse(text)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_sdp_error(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse(data)


FIELD_LINES = [
    line
    for path in sorted((Path(__file__).parent / "data").glob("*.sdp"))
    for line in path.read_text(encoding="utf-8").splitlines()
    if line[:2] not in ("v=", "o=", "s=", "c=")
]
HEAD = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
# Mostly real lines from the field in random order and number, salted with junk.
line_soup = st.lists(
    st.sampled_from(FIELD_LINES)
    | st.sampled_from([line for line in FIELD_LINES if line.startswith("m=")])
    | st.sampled_from(FIELD_LINES).map(lambda line: line[: len(line) // 2])
    | st.builds(lambda kind, text: f"{kind}={text}", st.sampled_from("acmotv"), st.text(max_size=30)),
    max_size=30,
)


@settings(max_examples=300)
@given(line_soup)
def test_shuffled_field_lines_parse_or_raise_sdp_error_and_answering_too(lines: list[str]) -> None:
    body = HEAD + "\r\n".join(lines)
    try:
        offer = SessionDescription.parse(body)
    except SdpError:
        return
    assert SessionDescription.parse(bytes(offer)) == offer
    try:
        answer, media = answer_offer(
            offer, local_address="10.0.0.1", local_port=4000, session=LocalSdpSession()
        )
    except (NoCommonCodec, SrtpNotAcceptable):
        return
    assert len(answer.media) == len(offer.media)
    assert answer.media[media.media_index].port == 4000
    assert sum(section.port != 0 for section in answer.media) == 1
