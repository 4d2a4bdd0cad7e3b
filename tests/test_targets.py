"""Transfer target patterns: parsed URIs compared part by part, never by prefix; none allowed by default."""

from __future__ import annotations

import pytest

from voicelive_sip.aio.endpoint import target_uri
from voicelive_sip.sip import parse_uri
from voicelive_sip.targets import TargetPattern, allowed

SERVER = "pbx.example.com:5080"


def permits(patterns: list[str], target: str, server: str | None = SERVER) -> bool:
    """What the transfer tool decides: the target resolved as the REFER resolves it, then matched."""
    return allowed(target_uri(target, server), [TargetPattern.parse(p) for p in patterns], server=server)


@pytest.mark.parametrize(
    ("patterns", "target"),
    [
        # The security review's findings: each got through a string-prefix match.
        (["sip:desk@127.0.0.1"], "sip:desk@127.0.0.1.evil.example"),
        (["sip:desk@127.0.0.1"], "sip:desk2@127.0.0.1"),
        (["1000"], "1000@premium.example"),
        (["1000"], "sip:1000@premium.example"),
        (["1000"], "10009005551234"),
        (["1000"], "100"),
        # An explicit prefix has a length bound.
        (["+4930XXXX"], "+493012345"),
        (["+4930XXXX"], "+4930123"),
        (["+4930XXXX"], "+4930123a"),
        (["+4930XXXX"], "+49301234@premium.example"),
        (["+4930XXXX"], "+49401234"),
        # Users and hosts compare exactly; a port in the pattern must match.
        (["sip:desk@pbx.example.com"], "sip:desk@pbx.example.com.evil.example"),
        (["sip:desk@pbx.example.com"], "sip:desk@evil.example"),
        (["sip:desk@pbx.example.com"], "sip:Desk@pbx.example.com"),
        (["sip:desk@pbx.example.com"], "sip:pbx.example.com"),
        (["sip:desk@pbx.example.com:5060"], "sip:desk@pbx.example.com:5070"),
        (["sip:desk@pbx.example.com:5060"], "sip:desk@pbx.example.com"),
        (["sip:desk@pbx.example.com"], "sips:desk@pbx.example.com"),
        (["sip:*@pbx.example.com"], "sip:anyone@evil.example"),
        (["sip:*@pbx.example.com"], "sip:pbx.example.com"),
        # Parts of a URI that send the request (or the transferee's INVITE) somewhere else.
        (["sip:desk@pbx.example.com"], "sip:desk@pbx.example.com;maddr=evil.example"),
        (["sip:desk@pbx.example.com"], "sip:desk@pbx.example.com?Route=%3Csip:evil.example%3E"),
        (["sip:desk@pbx.example.com"], "sip:desk:secret@pbx.example.com"),
        # A bare pattern means SIP_SERVER's host and port, where a bare target number goes.
        (["1000"], "sip:1000@pbx.example.com:5060"),
        (["1000"], "tel:1000"),
        (["tel:+4930XXXX"], "sip:+49301234@pbx.example.com:5080"),
        (["tel:+4930XXXX"], "tel:+49301234;phone-context=premium.example"),
        (["tel:+4930XXXX"], "tel:+493012345"),
        (["sip:desk@pbx.example.com"], "mailto:desk@pbx.example.com"),
    ],
)
def test_targets_outside_the_patterns_are_refused(patterns: list[str], target: str) -> None:
    assert not permits(patterns, target)


@pytest.mark.parametrize(
    ("patterns", "target"),
    [
        (["sip:desk@127.0.0.1"], "sip:desk@127.0.0.1"),
        (["sip:desk@127.0.0.1"], "sip:desk@127.0.0.1:5062"),  # no port in the pattern: any port
        (["sip:desk@127.0.0.1"], "desk@127.0.0.1"),
        (["sip:desk@127.0.0.1"], "sip:desk@127.0.0.1;transport=tcp"),
        (["sip:desk@PBX.Example.com"], "sip:desk@pbx.example.COM"),  # hosts compare case-insensitively
        (["desk@pbx.example.com"], "sip:desk@pbx.example.com"),
        (["sip:desk@pbx.example.com:5060"], "sip:desk@pbx.example.com:5060"),
        (["sips:desk@pbx.example.com"], "sips:desk@pbx.example.com"),
        (["sip:desk@[2001:db8::1]"], "sip:desk@[2001:DB8:0::1]"),
        (["sip:*@pbx.example.com"], "sip:anyone@pbx.example.com"),
        (["sip:*@pbx.example.com"], "sip:+15551234@pbx.example.com;user=phone"),
        (["sip:%64esk@pbx.example.com"], "sip:desk@pbx.example.com"),  # escapes compare decoded
        (["1000"], "1000"),
        (["1000"], "sip:1000@pbx.example.com:5080"),
        (["+4930XXXX"], "+49301234"),
        (["+4930XXXX"], "+49309999"),
        (["XXXX"], "4711"),
        (["desk"], "desk"),
        (["sip:Xavier@pbx.example.com"], "sip:Xavier@pbx.example.com"),  # X is a digit only in numbers
        (["tel:+4930XXXX"], "tel:+49-30-1234"),
        (["sip:elsewhere@example.net", "1000"], "1000"),
    ],
)
def test_targets_inside_the_patterns_are_allowed(patterns: list[str], target: str) -> None:
    assert permits(patterns, target)


def test_x_is_one_digit_only_in_a_number() -> None:
    assert not permits(["sip:Xavier@pbx.example.com"], "sip:1avier@pbx.example.com")
    assert not permits(["XXXX"], "desk")
    assert not permits(["XXXX"], "12345")


def test_an_empty_list_allows_nothing() -> None:
    assert not allowed(parse_uri("sip:desk@127.0.0.1"), [])
    assert not allowed(parse_uri("sip:desk@127.0.0.1"), [], server="127.0.0.1")


def test_a_bare_pattern_without_a_sip_server_allows_nothing() -> None:
    pattern = TargetPattern.parse("1000")
    assert not allowed(parse_uri("sip:1000@pbx.example.com"), [pattern])
    assert allowed(parse_uri("sip:1000@pbx.example.com"), [pattern], server="pbx.example.com")
    # SIP_SERVER may name a transport; the host and port are what count.
    assert allowed(parse_uri("sip:1000@pbx:5080"), [pattern], server="pbx:5080;transport=tcp")


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "sip:desk@",
        "sip:desk@*.example.com",  # hosts are never wildcards
        "sip:desk*@pbx.example.com",  # * is the whole user or nothing
        "12*",
        "sip:desk@pbx.example.com;maddr=evil.example",
        "sip:desk@pbx.example.com?Route=x",
        "sip:desk:pw@pbx.example.com",
        "tel:desk",
        "pbx.example.com:5060",
        "https://example.com",
    ],
)
def test_malformed_patterns_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="transfer pattern"):
        TargetPattern.parse(text)


def test_a_pattern_keeps_its_text_for_the_tool_description() -> None:
    assert TargetPattern.parse(" +4930XXXX ").text == "+4930XXXX"
    assert TargetPattern.parse("sip:*@pbx.example.com").text == "sip:*@pbx.example.com"
