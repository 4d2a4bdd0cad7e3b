"""RFC 4475 torture messages: the parser's verdict on each, and what a UA can answer."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from voicelive_sip.sip import Request, Response, SipParseError, error_response, parse_message, request_problem

DATA = Path(__file__).parent.parent / "data" / "rfc4475"
ROWS = list(csv.DictReader((DATA / "REACTIONS.tsv").open(encoding="utf-8"), delimiter="\t"))
BY_CLASS = {cls: [r for r in ROWS if r["class"] == cls] for cls in ("valid", "invalid", "semantic")}


def _load(row: dict[str, str]) -> bytes:
    return (DATA / row["file"]).read_bytes()


def test_every_message_is_classified() -> None:
    manifest = list(csv.DictReader((DATA / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t"))
    assert [(r["file"], r["class"]) for r in manifest] == [(r["file"], r["class"]) for r in ROWS]
    assert {k: len(v) for k, v in BY_CLASS.items()} == {"valid": 13, "invalid": 19, "semantic": 17}


def _meaning(m: Request | Response) -> tuple[object, ...]:
    start: tuple[object, ...] = (m.method, m.uri) if isinstance(m, Request) else (m.status_code, m.reason)
    return (
        start,
        m.via,
        m.from_,
        m.to,
        m.call_id,
        m.cseq,
        m.contact,
        m.route,
        m.record_route,
        m.max_forwards,
        m.content_type,
        [(n.lower(), v) for n, v in m.headers],
        m.body,
    )


@pytest.mark.parametrize("row", BY_CLASS["valid"], ids=lambda r: r["file"])
def test_valid_messages_parse_and_round_trip(row: dict[str, str]) -> None:
    message = parse_message(_load(row))
    assert message.defects == []
    again = parse_message(message.serialize())
    assert again == message
    assert _meaning(again) == _meaning(message)


@pytest.mark.parametrize("row", BY_CLASS["invalid"], ids=lambda r: r["file"])
def test_invalid_messages_raise_with_the_status_to_answer(row: dict[str, str]) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_load(row))
    assert str(info.value.status_code) == row["parser"]
    response = error_response(info.value)
    if row["ua_reaction"] == "drop":
        assert response is None
    else:
        assert response is not None
        assert str(response.status_code) == row["ua_reaction"]
        # RFC 3261 §8.2.6.2: the Via values are copied verbatim, even when they are what was wrong.
        wire = response.serialize()
        assert wire.startswith(f"SIP/2.0 {row['ua_reaction']} ".encode())
        vias = [v for n, v in info.value.fields if n == "Via"]
        assert response.headers.get_all("Via") == vias
        for name in ("Call-ID", "CSeq"):
            assert response.headers.get(name) == dict(info.value.fields).get(name)


@pytest.mark.parametrize("row", BY_CLASS["semantic"], ids=lambda r: r["file"])
def test_semantic_messages_parse(row: dict[str, str]) -> None:
    message = parse_message(_load(row))
    problem = request_problem(message) if isinstance(message, Request) else None
    if row["ua_reaction"] == "400":
        # insuf, multi01, mcl01: parseable, but the UA must reject them before anything else.
        assert problem is not None and problem.status_code == 400
    else:
        assert problem is None


def test_specific_torture_details() -> None:
    wsinv = parse_message((DATA / "wsinv.dat").read_bytes())
    assert isinstance(wsinv, Request)
    assert wsinv.max_forwards == 68
    assert wsinv.cseq.seq == 9 and wsinv.cseq.method == "INVITE"
    assert [v.transport for v in wsinv.via] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in wsinv.via] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert wsinv.to.tag == "1918181833n"
    assert wsinv.from_.display_name == 'J Rosenberg \\"'
    assert wsinv.from_.tag == "98asjd8"
    assert wsinv.contact[0].display_name == 'Quoted string ""'
    assert wsinv.contact[0].q == 0.33
    assert wsinv.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert wsinv.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert wsinv.headers.get("Subject") == ""
    assert len(wsinv.body) == 150

    dblreq = parse_message((DATA / "dblreq.dat").read_bytes())
    assert isinstance(dblreq, Request) and dblreq.method == "REGISTER" and dblreq.body == b""

    esc02 = parse_message((DATA / "esc02.dat").read_bytes())
    assert isinstance(esc02, Request)
    assert len(esc02.contact) == 2  # C%6Fntact is another header, not Contact
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"

    semiuri = parse_message((DATA / "semiuri.dat").read_bytes())
    assert isinstance(semiuri, Request)
    assert semiuri.uri.user == "user;par=u%40example.net"  # type: ignore[union-attr]
    assert semiuri.uri.host == "example.com"  # type: ignore[union-attr]

    mpart = parse_message((DATA / "mpart01.dat").read_bytes())
    assert mpart.content_type is not None and mpart.content_type.mime == "multipart/mixed"
    assert len(mpart.body) == 553

    with pytest.raises(SipParseError) as badvers:
        parse_message((DATA / "badvers.dat").read_bytes())
    assert badvers.value.reason == "Version Not Supported"
