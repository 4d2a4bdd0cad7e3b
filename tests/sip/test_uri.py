"""URI parsing, serialization and RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import AbsoluteUri, SipParseError, SipUri, TelUri, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr;maddr=239.255.255.1?subject=hi&x=y"
    )
    assert isinstance(uri, SipUri)
    assert uri.scheme == "sips" and uri.secure
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "[2001:db8::1]", 5061)
    assert uri.transport == "tcp" and uri.lr and uri.maddr == "239.255.255.1"
    assert uri.headers == (("subject", "hi"), ("x", "y"))
    assert (
        str(uri) == "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr;maddr=239.255.255.1?subject=hi&x=y"
    )


def test_host_only_and_ipv4() -> None:
    uri = parse_uri("sip:192.0.2.4")
    assert isinstance(uri, SipUri) and uri.user is None and uri.host == "192.0.2.4" and uri.port is None
    assert str(parse_uri("SIP:Example.COM:5060")) == "sip:Example.COM:5060"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;ext=42")
    assert isinstance(uri, TelUri) and uri.is_global and uri.param("ext") == "42"
    assert uri == parse_uri("tel:+1.201.555.0123;EXT=42")
    local = parse_uri("tel:7042;phone-context=example.com")
    assert isinstance(local, TelUri) and not local.is_global
    assert str(local) == "tel:7042;phone-context=example.com"


def test_other_schemes_are_opaque() -> None:
    uri = parse_uri("soap.beep://192.0.2.103:3002")
    assert uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:user@exa mple.com",
        "sip:user@example.com:99999",
        "sip:user@example.com:port",
        "sip:user@-bad.example.com",
        "sip:user@example..com",
        "sip:us%zzer@example.com",
        "sip:user@example.com;",
        "sip:user@[::1",
        "<sip:user@example.com>",
        "tel:xyz",
        "tel:+",
        "nocolon",
        "1sip:x",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


# RFC 3261 §19.1.4, the examples of equivalent and non-equivalent URIs.
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("sip:bob@[2001:db8:0:0::1]", "sip:bob@[2001:DB8::1]"),
]
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com;newparam=5", "sip:alice@atlanta.com;newparam=6"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equivalent_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua == ub and ub == ua
    assert hash(ua) == hash(ub)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_different_uris(a: str, b: str) -> None:
    assert parse_uri(a) != parse_uri(b)


def test_param_helpers() -> None:
    uri = parse_uri("sip:bob@biloxi.com;transport=udp")
    assert isinstance(uri, SipUri)
    changed = uri.with_params(transport="tcp", lr=None)
    assert str(changed) == "sip:bob@biloxi.com;transport=tcp;lr"
    assert str(changed.without_params("TRANSPORT")) == "sip:bob@biloxi.com;lr"


def test_escaped_user_compares_decoded_and_serializes_as_received() -> None:
    uri = parse_uri("sip:sips%3Auser%40example.com@example.net")
    assert isinstance(uri, SipUri)
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"
    assert uri == parse_uri("sip:sips%3auser%40example.com@EXAMPLE.net")
