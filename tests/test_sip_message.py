"""The sans-IO SIP message layer: addresses, messages, framing and digest authentication.

Many messages here follow the RFC 4475 torture tests (written out again by hand, with the RFC's
section in the test name) and RFC 5118's IPv6 ones; the digest values are the worked examples
of RFC 2617 3.5 and RFC 7616 3.9.1. The last test fuzzes both parsers with seeded mutations.
"""

from __future__ import annotations

import hashlib
import random
import re
import textwrap
import time

import pytest

from telephony.sip.address import AddressError, NameAddress, SipUri, UnsupportedSchemeError, Via, split_header_list
from telephony.sip.auth import Challenge, DigestServer, authorization
from telephony.sip.message import (
    COMPACT,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_MESSAGE_BYTES,
    REASONS,
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamParser,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)


def wire(head: str, body: bytes | str = b"") -> bytes:
    """A message from readable text: the head is dedented, its lines end in CRLF, "{len}" is
    replaced by the body's length, and a blank line separates the body."""
    if isinstance(body, str):
        body = body.replace("\n", "\r\n").encode()
    lines = textwrap.dedent(head).strip("\n").split("\n")
    return ("\r\n".join(lines) + "\r\n\r\n").replace("{len}", str(len(body))).encode() + body


SDP = """v=0
o=agent 2890844526 2890844526 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 49170 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv
"""

INVITE = wire(
    """
    INVITE sip:service@agent.example.com SIP/2.0
    Via: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK776asdhds;rport
    Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.5
    Record-Route: <sip:pbx.example.com;lr>
    Max-Forwards: 69
    To: "Customer Service" <sip:service@agent.example.com>
    From: "Alice" <sip:+8613800138000@pbx.example.com>;tag=1928301774
    Call-ID: a84b4c76e66710@pc33.example.com
    CSeq: 314159 INVITE
    Contact: <sip:alice@192.0.2.4:5060;transport=udp>
    Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO
    Supported: replaces, timer
    Content-Type: application/sdp
    Content-Length: {len}
    """,
    SDP,
)

TRYING = wire(
    """
    SIP/2.0 100 Trying
    Via: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.1
    To: <sip:service@agent.example.com>
    From: "Alice" <sip:+8613800138000@pbx.example.com>;tag=1928301774
    Call-ID: a84b4c76e66710@pc33.example.com
    CSeq: 314159 INVITE
    Content-Length: 0
    """
)

OK_INVITE = wire(
    """
    SIP/2.0 200 OK
    Via: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK776asdhds;rport=5060
    Record-Route: <sip:p2.example.com;lr>, <sip:pbx.example.com;lr>
    To: <sip:service@agent.example.com>;tag=a6c85cf
    From: "Alice" <sip:+8613800138000@pbx.example.com>;tag=1928301774
    Call-ID: a84b4c76e66710@pc33.example.com
    CSeq: 314159 INVITE
    Contact: <sip:agent@192.0.2.10:5060>
    Content-Type: application/sdp; charset=utf-8
    Content-Length: {len}
    """,
    SDP,
)

ACK = wire(
    """
    ACK sip:agent@192.0.2.10:5060 SIP/2.0
    Via: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bKnashds9
    Route: <sip:pbx.example.com;lr>
    Max-Forwards: 70
    To: <sip:service@agent.example.com>;tag=a6c85cf
    From: "Alice" <sip:+8613800138000@pbx.example.com>;tag=1928301774
    Call-ID: a84b4c76e66710@pc33.example.com
    CSeq: 314159 ACK
    Content-Length: 0
    """
)

BYE_COMPACT = wire(
    """
    BYE sip:alice@192.0.2.4 SIP/2.0
    v: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-bye-1
    f: <sip:service@agent.example.com>;tag=a6c85cf
    t: "Alice" <sip:+8613800138000@pbx.example.com>;tag=1928301774
    i: a84b4c76e66710@pc33.example.com
    CSeq: 231 BYE
    Max-Forwards: 70
    l: 0
    """
)

REGISTER_AUTH = wire(
    """
    REGISTER sip:registrar.example.com SIP/2.0
    Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKreg2
    Max-Forwards: 70
    To: <sip:agent@example.com>
    From: <sip:agent@example.com>;tag=456248
    Call-ID: 843817637684230@998sdasdh09
    CSeq: 1827 REGISTER
    Contact: <sip:agent@192.0.2.10:5061;transport=tls>;expires=3600
     ;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    Authorization: Digest username="agent", realm="example.com",
     nonce="ea9c8e88df84f1cec4341ae6cbe5a359", uri="sip:registrar.example.com",
     response="dfe56131d1958046689d83306477ecc", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"
    Content-Length: 0
    """
)

UNAUTHORIZED = wire(
    """
    SIP/2.0 401 Unauthorized
    Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKreg1
    To: <sip:agent@example.com>;tag=2493k59kd
    From: <sip:agent@example.com>;tag=456248
    Call-ID: 843817637684230@998sdasdh09
    CSeq: 1826 REGISTER
    WWW-Authenticate: Digest realm="example.com", qop="auth,auth-int",
     nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", stale=FALSE, algorithm=MD5
    Content-Length: 0
    """
)

INFO_DTMF = wire(
    """
    INFO sip:agent@192.0.2.10 SIP/2.0
    Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKinfo7
    To: <sip:service@agent.example.com>;tag=a6c85cf
    From: <sip:+8613800138000@pbx.example.com>;tag=1928301774
    Call-ID: a84b4c76e66710@pc33.example.com
    CSeq: 314160 INFO
    Content-Type: application/dtmf-relay
    Content-Length: {len}
    """,
    "Signal=5\nDuration=160\n",
)

NOTIFY_SIPFRAG = wire(
    """
    NOTIFY sip:agent@192.0.2.10 SIP/2.0
    Via: SIP/2.0/UDP pbx.example.com;branch=z9hG4bKnotify1
    To: <sip:service@agent.example.com>;tag=a6c85cf
    From: <sip:+8613800138000@pbx.example.com>;tag=1928301774
    Call-ID: a84b4c76e66710@pc33.example.com
    CSeq: 20 NOTIFY
    o: refer
    Subscription-State: terminated;reason=noresource
    c: message/sipfrag;version=2.0
    l: {len}
    """,
    "SIP/2.0 200 OK\n",
)

# RFC 4475 wsinv: folding everywhere, LWS around every separator, compact and long names
# mixed, odd case, leading zeros, an empty Subject, an unknown header with an unusual value.
WSINV = wire(
    r"""
    INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
    TO :
     sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
    from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
      ;
      tag = 98asjd8
    MaX-fOrWaRdS: 0068
    Call-ID: wsinv.ndaksdj@192.0.2.1
    Content-Length   : {len}
    cseq: 0009
      INVITE
    Via  : SIP  /   2.0
     /UDP
        192.0.2.2;rport;branch=390skdjuw
    s :
    NewFangledHeader:   newfangled value
     continued newfangled value
    UnknownHeaderWithUnusualValue: ;;,,;;,;
    Content-Type: application/sdp
    Route:
     <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
    v:  SIP  / 2.0  / TCP     spindle.example.com   ;
      branch  =   z9hG4bK9ikj8  ,
     SIP  /    2.0   / UDP  192.168.255.111   ; branch=
     z9hG4bK30239
    m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
          newvalue ;
      secondparam ; q = 0.33
    """,
    SDP,
)

# RFC 4475 intmeth: every character a token, URI user/password or word may hold, escaped
# control characters in a quoted string, UTF-8 in a parameter and a header value.
INTMETH_METHOD = "!interesting-Method0123456789_*+`.%indeed'~"
INTMETH_USER = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
INTMETH_PASSWORD = "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
INTMETH = (
    f"{INTMETH_METHOD} sip:{INTMETH_USER}:{INTMETH_PASSWORD}@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n"
    f'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:{INTMETH_USER}@example.com>\r\n'
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com> "
    ";fromParam''~+*_!.-%=\"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439\";tag=_token~1'+`*%!-.\r\n"
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n"
    f"CSeq: 139122385 {INTMETH_METHOD}\r\n"
    "Max-Forwards: 255\r\n"
    "extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb\r\n"
    "Content-Length: 0\r\n\r\n"
).encode()

# RFC 4475 esc01: escapes in the Request-URI, To, From and in Contact URI parameters.
ESC01 = wire(
    """
    INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
    To: sip:%75se%72@example.com
    From: <sip:I%20have%20spaces@example.net>;tag=938
    Max-Forwards: 87
    i: esc01.239409asdfakjkn23onasd0-3234
    CSeq: 234234 INVITE
    Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
    C: application/sdp
    Contact:
      <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
    Content-Length: {len}
    """,
    SDP,
)

# RFC 5118: IPv6 references in the Request-URI, Via (with received) and Contact.
IPV6_REGISTER = wire(
    """
    REGISTER sip:[2001:db8::10]:5070 SIP/2.0
    To: sip:user@example.com
    From: sip:user@example.com;tag=81x2
    Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=[2001:db8::9:255]
    Call-ID: SSG9559905523997077@hlau_4100
    Max-Forwards: 70
    Contact: "Caller" <sip:caller@[2001:db8::1]>
    CSeq: 98176 REGISTER
    Content-Length: 0
    """
)

CORPUS = [
    INVITE,
    TRYING,
    OK_INVITE,
    ACK,
    BYE_COMPACT,
    REGISTER_AUTH,
    UNAUTHORIZED,
    INFO_DTMF,
    NOTIFY_SIPFRAG,
    WSINV,
    INTMETH,
    ESC01,
    IPV6_REGISTER,
]

OPTIONS_HEAD = """
    OPTIONS sip:agent@example.com SIP/2.0
    Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKopt
    Max-Forwards: 70
    To: <sip:agent@example.com>
    From: <sip:monitor@example.com>;tag=77
    Call-ID: options-1@192.0.2.1
    CSeq: 1 OPTIONS
    """


def options(*extra: str, start: str | None = None, drop: tuple[str, ...] = ()) -> bytes:
    """A small valid OPTIONS with header lines added, removed, or another start line."""
    lines = textwrap.dedent(OPTIONS_HEAD).strip("\n").split("\n")
    if start is not None:
        lines[0] = start
    lines = [line for line in lines if line.split(":")[0] not in drop] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- URIs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fields",
    [
        ("sip:alice@atlanta.com", dict(scheme="sip", user="alice", host="atlanta.com", port=None)),
        ("SIP:alice@atlanta.com:5070", dict(scheme="sip", user="alice", port=5070)),
        ("sips:bob:secret@biloxi.com", dict(scheme="sips", user="bob", password="secret")),
        ("sip:192.0.2.4", dict(user=None, host="192.0.2.4")),
        ("sip:pbx.example.com;lr", dict(host="pbx.example.com", params={"lr": None})),
        (
            "sip:a@b;Transport=TCP;maddr=239.255.255.1;ttl=15",
            dict(params={"transport": "TCP", "maddr": "239.255.255.1", "ttl": "15"}),
        ),
        ("sip:alice;day=tuesday@atlanta.com", dict(user="alice;day=tuesday", host="atlanta.com")),
        ("sip:bob@b?subject=project%20x&priority=urgent", dict(headers={"subject": "project x", "priority": "urgent"})),
        ("sip:[2001:db8::10]", dict(host="[2001:db8::10]", port=None)),
        ("sip:[2001:db8::10]:5070", dict(host="[2001:db8::10]", port=5070)),
        ("sip:[2001:db8::10:5070]", dict(host="[2001:db8::10:5070]", port=None)),  # RFC 5118: no port
        ("sip:user@[::ffff:192.0.2.10]", dict(host="[::ffff:192.0.2.10]")),
        ("sip:sips%3Auser%40example.com@example.net", dict(user="sips:user@example.com", host="example.net")),
        ("sip:null-%00-null@example.com", dict(user="null-\x00-null")),
        ("sip:%E5%BC%A0@example.com", dict(user="\u5f20")),
        ("sip:trunk_1@pbx_a.local", dict(user="trunk_1", host="pbx_a.local")),
        ("tel:+1-201-555-0123;phone-context=example.com", dict(scheme="tel", user="+1-201-555-0123", host="")),
        (
            f"sip:{INTMETH_USER}:{INTMETH_PASSWORD}@example.com",
            dict(user=INTMETH_USER, password=INTMETH_PASSWORD, host="example.com"),
        ),
    ],
)
def test_uri_parse(text, fields):
    uri = SipUri.parse(text)
    for name, value in fields.items():
        assert getattr(uri, name) == value, name
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    "text, written",
    [
        ("sip:alice@atlanta.com:5070;transport=tcp;lr", "sip:alice@atlanta.com:5070;transport=tcp;lr"),
        ("SIP:alice@atlanta.com", "sip:alice@atlanta.com"),
        ("sip:%61lice@atlanta.com", "sip:alice@atlanta.com"),  # needless escapes are dropped
        ("sip:sips%3Auser%40example.com@example.net", "sip:sips%3Auser%40example.com@example.net"),
        ("sip:I%20have%20spaces@example.net", "sip:I%20have%20spaces@example.net"),
        ("sip:%ff@example.com", "sip:%FF@example.com"),  # not UTF-8: the byte survives
        ("sip:bob@b?subject=project%20x&priority=urgent", "sip:bob@b?subject=project%20x&priority=urgent"),
        ("sip:x@[2001:db8::1]:5061;transport=tls", "sip:x@[2001:db8::1]:5061;transport=tls"),
        ("sip:h;;lr;", "sip:h;lr"),
        ("tel:+8613800138000", "tel:+8613800138000"),
        (f"sip:{INTMETH_USER}:{INTMETH_PASSWORD}@example.com", f"sip:{INTMETH_USER}:{INTMETH_PASSWORD}@example.com"),
    ],
)
def test_uri_str(text, written):
    assert str(SipUri.parse(text)) == written


def test_uri_escaping_spellings_compare_equal():
    assert SipUri.parse("sip:%75se%72@example.com") == SipUri.parse("sip:user@example.com")
    uri = SipUri(user="a b@c", host="example.com", params={"x": "1;2"}, headers={"h": "v&w"})
    assert str(uri) == "sip:a%20b%40c@example.com;x=1%3B2?h=v%26w"
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@atlanta.com",  # no scheme
        "<sip:user@example.com>",  # RFC 4475 ltgtruri
        "sip:user@example.com; lr",  # RFC 4475 lwsruri
        "sip:user@2001:db8::10",  # RFC 5118: IPv6 without brackets
        "sip:[2001:db8::10",
        "sip:[not:an:address]",
        "sip:[2001:db8::1]x",
        "sip:user@host:",
        "sip:user@host:65536",
        "sip:user@host:50a",
        "sip:@host",
        "sip:user@",
        "sip:user@ho st",
        "sip:user@host\x00",
        "sip:us%zzer@host",  # bad escape
        "sip:user@host;=x",
        "tel:",
    ],
)
def test_uri_rejects(text):
    with pytest.raises(AddressError):
        SipUri.parse(text)


@pytest.mark.parametrize(
    "text", ["http://www.example.com", "isbn:2983792873", "nobodyKnowsThisScheme:totallyopaquecontent"]
)
def test_uri_unsupported_scheme(text):
    with pytest.raises(UnsupportedSchemeError):
        SipUri.parse(text)


def test_uri_transport_and_host_port():
    assert SipUri.parse("sip:a@h;transport=TCP").transport == "tcp"
    assert SipUri.parse("sip:a@h").transport is None
    assert SipUri.parse("sip:a@h;transport").transport is None
    assert SipUri.parse("sip:a@h").host_port() == ("h", 5060)
    assert SipUri.parse("sips:a@h").host_port(5061) == ("h", 5061)
    assert SipUri.parse("sip:a@h:5080").host_port(5061) == ("h", 5080)
    assert SipUri.parse("sip:[2001:db8::1]:5070").host_port() == ("2001:db8::1", 5070)


# --- name-addr ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, display, uri, params",
    [
        ("<sip:a@b>", None, "sip:a@b", {}),
        ('"Bob" <sip:bob@biloxi.com>;tag=a6c85cf', "Bob", "sip:bob@biloxi.com", {"tag": "a6c85cf"}),
        ("Bob Smith <sip:bob@biloxi.com>", "Bob Smith", "sip:bob@biloxi.com", {}),
        ("caller<sip:caller@example.com>;tag=323", "caller", "sip:caller@example.com", {"tag": "323"}),  # lwsdisp
        (
            '"J Rosenberg \\\\\\""  <sip:jdrosen@example.com> ; tag = 98asjd8',
            'J Rosenberg \\"',
            "sip:jdrosen@example.com",
            {"tag": "98asjd8"},
        ),
        ('"Doe, John" <sip:j@x>', "Doe, John", "sip:j@x", {}),
        ('"" <sip:anonymous@anonymous.invalid>', "", "sip:anonymous@anonymous.invalid", {}),
        ("\u5f20\u4e09 <sip:zhang@example.com>", "\u5f20\u4e09", "sip:zhang@example.com", {}),
        # RFC 3261 20.10: without <>, every parameter belongs to the header, not the URI.
        ("sip:bob@biloxi.com;tag=x;lr", None, "sip:bob@biloxi.com", {"tag": "x", "lr": None}),
        ("sip:vivekg@chair-dnrc.example.com ;   tag    = 18n", None, "sip:vivekg@chair-dnrc.example.com", {"tag": "18n"}),
        ("<sip:a@b;lr>;expires=60;q=0.5", None, "sip:a@b;lr", {"expires": "60", "q": "0.5"}),
        ('<sip:a@b>;+sip.instance="<urn:x;2>";reg-id=1', None, "sip:a@b", {"+sip.instance": '"<urn:x;2>"', "reg-id": "1"}),
        ("<tel:+8613800138000>", None, "tel:+8613800138000", {}),
    ],
)
def test_name_address_parse(text, display, uri, params):
    address = NameAddress.parse(text)
    assert (address.display, str(address.uri), address.params) == (display, uri, params)
    assert NameAddress.parse(str(address)) == address


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 quotbal: unterminated quote
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # RFC 4475 baddn: comma in a token
        '"Watson, Thomas" < sip:t.watson@example.org >',  # RFC 4475 badaspec: LWS inside <>
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # RFC 4475 regbadct
        "sip:a@b, sip:c@d",  # two addresses where one is allowed
        "<sip:a@b>, <sip:c@d>",
        "<sip:a@b",
        '"Bob" sip:bob@b',
        "<sip:a@b>;tag=x junk",
        "<sip:a@b>;;tag=x",
        "<sip:a@b>;tag=\"unterminated",
        "*",
        "",
    ],
)
def test_name_address_rejects(text):
    with pytest.raises(AddressError):
        NameAddress.parse(text)


def test_name_address_str_quotes_and_escapes_the_display_name():
    address = NameAddress(SipUri(user="bob", host="b"), 'Say "hi" \\ \x07bye\r\nnow', {"tag": "1"})
    assert str(address) == '"Say \\"hi\\" \\\\ \\\x07bye  now" <sip:bob@b>;tag=1'
    assert NameAddress.parse(str(address)).display == 'Say "hi" \\ \x07bye  now'
    assert str(NameAddress.parse("sip:bob@b;tag=1")) == "<sip:bob@b>;tag=1"


def test_with_tag_copies():
    address = NameAddress.parse("<sip:bob@b;lr>;expires=5")
    tagged = address.with_tag("xyz")
    assert (tagged.tag, address.tag) == ("xyz", None)
    assert str(tagged) == "<sip:bob@b;lr>;expires=5;tag=xyz"
    tagged.uri.params["x"] = "1"
    assert "x" not in address.uri.params
    assert NameAddress.parse("<sip:a@b>;tag").tag is None


# --- Via --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, transport, host, port, params",
    [
        ("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776", "UDP", "pc33.atlanta.com", None, {"branch": "z9hG4bK776"}),
        ("SIP/2.0/tcp 192.0.2.1:5080;rport;branch=z9hG4bKx", "TCP", "192.0.2.1", 5080, {"rport": None, "branch": "z9hG4bKx"}),
        ("sip/2.0/ws df7jal23ls0d.invalid;branch=z9hG4bKws", "WS", "df7jal23ls0d.invalid", None, {"branch": "z9hG4bKws"}),
        ("SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skd", "UDP", "192.0.2.2", None, {"rport": None, "branch": "390skd"}),
        ("SIP/2.0/UDP  192.168.255.111   ; branch= z9hG4bK302", "UDP", "192.168.255.111", None, {"branch": "z9hG4bK302"}),
        ("SIP/2.0/UDP host : 5060", "UDP", "host", 5060, {}),
        (
            "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3;received=[2001:db8::9:255]",
            "UDP",
            "[2001:db8::9:1]",
            6050,
            {"branch": "z9hG4bKas3", "received": "[2001:db8::9:255]"},
        ),
        (
            "SIP/2.0/UDP 192.0.2.1;rport=5062;received=198.51.100.7;maddr=239.1.1.1;ttl=1",
            "UDP",
            "192.0.2.1",
            None,
            {"rport": "5062", "received": "198.51.100.7", "maddr": "239.1.1.1", "ttl": "1"},
        ),
    ],
)
def test_via_parse(text, transport, host, port, params):
    via = Via.parse(text)
    assert (via.transport, via.host, via.port, via.params) == (transport, host, port, params)
    assert Via.parse(str(via)) == via
    assert via.branch == params.get("branch")


def test_via_str():
    via = Via("UDP", "192.0.2.10", 5060, {"branch": "z9hG4bKabc", "rport": None})
    assert str(via) == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc;rport"


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP host junk",
        "SIP/2.0/UDP 2001:db8::1",
        "SIP/2.0/UDP [2001:db8::zz]",
        "",
    ],
)
def test_via_rejects(text):
    with pytest.raises(AddressError):
        Via.parse(text)


@pytest.mark.parametrize(
    "value, elements",
    [
        ("INVITE, ACK ,BYE", ["INVITE", "ACK", "BYE"]),
        ('"Doe, John" <sip:j@x>;q=1, <sip:a@b;x=1,2>', ['"Doe, John" <sip:j@x>;q=1', "<sip:a@b;x=1,2>"]),
        ('"a \\" , b" <sip:a@b>, <sip:c@d>', ['"a \\" , b" <sip:a@b>', "<sip:c@d>"]),
        (" , ,a,, ", ["a"]),
        ("", []),
        ("single", ["single"]),
        ('"unterminated, quote', ['"unterminated, quote']),
    ],
)
def test_split_header_list(value, elements):
    assert split_header_list(value) == elements


# --- Headers --------------------------------------------------------------------------------


def test_headers_names_are_canonical_and_case_insensitive():
    headers = Headers(
        [("call-id", "1"), ("CSEQ", "2 INVITE"), ("www-authenticate", "Digest x"), ("x-custom-HEADER", "v"), ("i", "2")]
    )
    names = ["Call-ID", "CSeq", "WWW-Authenticate", "X-Custom-Header", "Call-ID"]
    assert [name for name, _ in headers.items()] == names
    assert headers.get("CALL-id") == headers.get("i") == "1"
    assert headers.get("Missing") is None and headers.get("Missing", "d") == "d"
    assert "cseq" in headers and "Via" not in headers and 5 not in headers
    assert len(headers) == 5


@pytest.mark.parametrize("compact, full", sorted(COMPACT.items()))
def test_headers_compact_names(compact, full):
    headers = Headers([(compact.upper(), "x")])
    assert headers.items() == [(full, "x")]
    assert headers.get(compact) == headers.get(full) == "x"


def test_headers_get_all_splits_list_headers_only():
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("v", "SIP/2.0/UDP c;branch=z9hG4bK3"),
            ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Allow", "INVITE,ACK"),
            ("Allow", "BYE"),
        ]
    )
    assert headers.get_all("via") == [f"SIP/2.0/UDP {h};branch=z9hG4bK{i}" for i, h in enumerate("abc", 1)]
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get_all("Route") == []


def test_headers_editing():
    headers = Headers([("Via", "v1"), ("To", "t"), ("Route", "r1"), ("Route", "r2"), ("From", "f")])
    headers.prepend("Via", "v0")
    headers.prepend("Record-Route", "rr")  # no Record-Route yet: goes on top
    headers.set("route", "r")
    headers.add("Route", "r3")
    headers.set("Subject", "new")  # absent: appended
    assert headers.items() == [
        ("Record-Route", "rr"),
        ("Via", "v0"),
        ("Via", "v1"),
        ("To", "t"),
        ("Route", "r"),
        ("From", "f"),
        ("Route", "r3"),
        ("Subject", "new"),
    ]
    copy = headers.copy()
    headers.remove("ROUTE")
    headers.remove("Nothing")
    assert "Route" not in headers and copy.get_all("Route") == ["r", "r3"]
    assert copy != headers and copy == Headers(copy.items())
    assert list(headers) == headers.items()


@pytest.mark.parametrize(
    "name, value",
    [
        ("Subject", "hi\r\nVia: SIP/2.0/UDP evil"),
        ("Subject", "a\nb"),
        ("Subject", "nul\x00"),
        ("Bad Name", "x"),
        ("Bad:Name", "x"),
        ("", "x"),
    ],
)
def test_headers_refuse_injection(name, value):
    with pytest.raises(ValueError):
        Headers().add(name, value)
    with pytest.raises(ValueError):
        Headers([(name, value)])


# --- parse_message: valid messages ----------------------------------------------------------


def test_parse_invite():
    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri, message.version) == ("INVITE", "sip:service@agent.example.com", "SIP/2.0")
    assert message.request_uri == SipUri(user="service", host="agent.example.com")
    assert message.call_id == "a84b4c76e66710@pc33.example.com"
    assert message.cseq == (314159, "INVITE")
    assert [via.branch for via in message.vias] == ["z9hG4bK776asdhds", "z9hG4bKnashds8"]
    assert message.top_via == Via("UDP", "pbx.example.com", 5060, {"branch": "z9hG4bK776asdhds", "rport": None})
    caller = message.from_addr
    assert (caller.display, caller.uri.user, caller.tag) == ("Alice", "+8613800138000", "1928301774")
    assert message.to_addr.tag is None
    assert message.contact == NameAddress(SipUri("sip", "alice", None, "192.0.2.4", 5060, {"transport": "udp"}))
    assert message.content_type == "application/sdp"
    assert message.header("max-forwards") == "69"
    assert message.headers.get_all("Allow")[-1] == "INFO"
    assert message.body == SDP.replace("\n", "\r\n").encode()


def test_parse_response():
    message = parse_message(OK_INVITE)
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason) == (200, "OK")
    assert message.content_type == "application/sdp"
    assert message.headers.get_all("Record-Route") == ["<sip:p2.example.com;lr>", "<sip:pbx.example.com;lr>"]
    assert message.to_addr.tag == "a6c85cf"
    assert not hasattr(message, "request_uri")


def test_parse_compact_forms():
    message = parse_message(BYE_COMPACT)
    assert message.top_via.transport == "TCP"
    assert message.call_id == "a84b4c76e66710@pc33.example.com"
    assert message.from_addr.tag == "a6c85cf"
    assert message.headers.items()[0] == ("Via", "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-bye-1")
    notify = parse_message(NOTIFY_SIPFRAG)
    assert notify.header("Event") == "refer" and notify.content_type == "message/sipfrag"
    assert notify.body == b"SIP/2.0 200 OK\r\n"


def test_parse_wsinv():
    message = parse_message(WSINV)
    assert message.request_uri.params == {"unknownparam": None}
    assert message.to_addr == NameAddress(SipUri(user="vivekg", host="chair-dnrc.example.com"), params={"tag": "1918181833n"})
    assert message.from_addr.display == 'J Rosenberg \\"'
    assert message.from_addr.tag == "98asjd8"
    assert message.header("Max-Forwards") == "0068"
    assert message.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in message.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.header("Subject") == ""
    assert message.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert NameAddress.parse(message.header("Route")).uri.params == {
        "lr": None,
        "unknownwith": "value",
        "unknown-no-value": None,
    }
    assert message.contact.display == 'Quoted string ""'
    assert message.contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(message.body) == len(SDP.replace("\n", "\r\n"))


def test_parse_intmeth():
    message = parse_message(INTMETH)
    assert message.method == INTMETH_METHOD and message.cseq == (139122385, INTMETH_METHOD)
    assert (message.request_uri.user, message.request_uri.password) == (INTMETH_USER, INTMETH_PASSWORD)
    assert message.to_addr.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.to_addr.uri.user == INTMETH_USER
    assert message.from_addr.display == "token1~` token2'+_ token3*%!.-"
    assert message.from_addr.params == {
        "fromparam''~+*_!.-%": '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"',
        "tag": "_token~1'+`*%!-.",
    }
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert message.header("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_parse_esc01():
    message = parse_message(ESC01)
    assert message.request_uri.user == "sips:user@example.com"
    assert message.to_addr.uri.user == "user"
    assert message.from_addr.uri.user == "I have spaces"
    assert message.contact.uri.user == "caller"
    assert message.contact.uri.params == {"lr": None, "name": "value%41"}
    assert message.content_type == "application/sdp"


def test_parse_escnull():
    message = parse_message(
        wire(
            """
            REGISTER sip:example.com SIP/2.0
            To: sip:null-%00-null@example.com
            From: sip:null-%00-null@example.com;tag=839923423
            Max-Forwards: 70
            Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
            CSeq: 14398234 REGISTER
            Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
            Contact: <sip:%00@host5.example.com>
            Contact: <sip:%00%00@host5.example.com>
            L:0
            """
        )
    )
    assert message.to_addr.uri.user == "null-\x00-null"
    assert [NameAddress.parse(c).uri.user for c in message.headers.get_all("Contact")] == ["\x00", "\x00\x00"]
    assert str(message.to_addr.uri) == "sip:null-%00-null@example.com"


def test_parse_ipv6_rfc5118():
    message = parse_message(IPV6_REGISTER)
    assert message.request_uri.host_port() == ("2001:db8::10", 5070)
    assert message.top_via.host == "[2001:db8::9:1]" and message.top_via.params["received"] == "[2001:db8::9:255]"
    assert message.contact.uri.host == "[2001:db8::1]"


@pytest.mark.parametrize(
    "start, reason",
    [
        ("SIP/2.0 100 ", ""),  # RFC 4475 noreason
        ("SIP/2.0 100", ""),
        ("SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e", "= 2**3 * 5**2 \u043d\u043e"),  # unreason
        ("sip/2.0 486 Busy  Here", "Busy  Here"),
        ("SIP/2.0 699 Whatever", "Whatever"),
    ],
)
def test_parse_status_lines(start, reason):
    message = parse_message(options(start=start))
    assert isinstance(message, SipResponse) and message.reason == reason and message.version == "SIP/2.0"


def test_parse_tolerates_what_rfc_3261_allows():
    # Bare LF line ends, CRLFs before the start line, a missing blank line, extra spaces in the
    # request line (RFC 4475 lwsstart, trws), an unknown method, Max-Forwards 0, a Via without
    # branch (RFC 2543 peers), no Max-Forwards, `Contact: *`.
    lf = options().replace(b"\r\n", b"\n")
    assert parse_message(lf) == parse_message(options())
    assert parse_message(b"\r\n\r\n" + options()) == parse_message(options())
    assert parse_message(options().rstrip(b"\r\n")).header("CSeq") == "1 OPTIONS"
    assert parse_message(options(start="OPTIONS  sip:agent@example.com   SIP/2.0  ")).uri == "sip:agent@example.com"
    unknown = parse_message(options("CSeq: 1 NEWMETHOD", start="NEWMETHOD sip:a@example.com SIP/2.0", drop=("CSeq",)))
    assert unknown.method == "NEWMETHOD"
    assert parse_message(options("Max-Forwards: 0", drop=("Max-Forwards",))).header("Max-Forwards") == "0"
    assert parse_message(options("Via: SIP/2.0/UDP 192.0.2.1", drop=("Via",))).top_via.branch is None
    assert parse_message(options(drop=("Max-Forwards",))).header("Max-Forwards") is None
    contact_star = parse_message(options("Contact: *", "Expires: 0"))
    assert contact_star.contact is None


def test_parse_multiple_vias_in_one_line():
    message = parse_message(
        options("Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,SIP/2.0/TCP [::1]:5070;branch=z9hG4bK2", drop=("Via",))
    )
    assert [(v.host, v.port, v.transport) for v in message.vias] == [("a.example.com", None, "UDP"), ("[::1]", 5070, "TCP")]


def test_parse_longreq_like():
    vias = [f"Via: SIP/2.0/TCP sip{i}.example.com;branch=z9hG4bK{'x' * 100}{i}" for i in range(40)]
    long_value = "Long-Header: " + "a" * (MAX_HEADER_LINE - 20)
    routes = "Route: " + ", ".join(f"<sip:p{i}.example.com;lr>" for i in range(30))
    message = parse_message(options(*vias, long_value, routes))
    assert len(message.vias) == 41 and len(message.headers.get_all("Route")) == 30
    assert len(message.header("Long-Header")) == MAX_HEADER_LINE - 20


# --- parse_message: bodies ------------------------------------------------------------------


def test_body_is_cut_to_content_length():
    data = options("Content-Length: 4") + b"abcdEXTRA"
    assert parse_message(data).body == b"abcd"
    assert parse_message(options("Content-Length: 0") + b"junk").body == b""


def test_body_without_content_length_is_the_rest_of_the_datagram():
    assert parse_message(options() + b"\x00\xff binary \r\n\r\n").body == b"\x00\xff binary \r\n\r\n"


def test_body_may_hold_any_bytes():
    body = bytes(range(256))
    assert parse_message(options(f"Content-Length: {len(body)}") + body).body == body


# --- parse_message: what it refuses ---------------------------------------------------------

REJECTS = {
    # RFC 4475's invalid messages (by their names there) and what else the agent must not
    # swallow: (bytes, status to answer, words in the reason)
    "badvers": (options(start="OPTIONS sip:t.watson@example.org SIP/7.0"), 505, "version"),
    "badvers response": (options(start="SIP/3.0 200 OK"), 505, "version"),
    "unksm": (options(start="OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0"), 416, "scheme"),
    "novelsc": (options(start="OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0"), 416, "scheme"),
    "ltgtruri": (options(start="OPTIONS <sip:user@example.com> SIP/2.0"), 400, "Request-URI"),
    "lwsruri": (options(start="OPTIONS sip:user@example.com; lr SIP/2.0"), 400, "request line"),
    "RFC 5118 IPv6 without brackets": (options(start="OPTIONS sip:user@2001:db8::10 SIP/2.0"), 400, "Request-URI"),
    "missing Call-ID": (options(drop=("Call-ID",)), 400, "missing Call-ID"),
    "insuf": (options(drop=("Call-ID", "From", "To")), 400, "missing From, To, Call-ID"),
    "missing Via": (options(drop=("Via",)), 400, "missing Via"),
    "missing CSeq": (options(drop=("CSeq",)), 400, "missing CSeq"),
    "response missing Via": (options(start="SIP/2.0 200 OK", drop=("Via",)), 400, "missing Via"),
    "mismatch01": (options("CSeq: 1 INVITE", drop=("CSeq",)), 400, "does not match"),
    "cseq case": (options("CSeq: 1 options", drop=("CSeq",)), 400, "does not match"),
    "scalar02 CSeq overflow": (options("CSeq: 36893488147419103232 OPTIONS", drop=("CSeq",)), 400, "CSeq"),
    "cseq 2**32": (options("CSeq: 4294967296 OPTIONS", drop=("CSeq",)), 400, "CSeq"),
    "cseq no method": (options("CSeq: 1", drop=("CSeq",)), 400, "CSeq"),
    "scalar02 Max-Forwards 300": (options("Max-Forwards: 300", drop=("Max-Forwards",)), 400, "Max-Forwards"),
    "max-forwards negative": (options("Max-Forwards: -1", drop=("Max-Forwards",)), 400, "Max-Forwards"),
    "ncl": (options("Content-Length: -999") + b"x", 400, "Content-Length"),
    "content-length overflow": (options("Content-Length: 99999999999999999999") + b"x", 400, "Content-Length"),
    "content-length words": (options("Content-Length: ten") + b"x", 400, "Content-Length"),
    "mcl01": (options("Content-Length: 0", "Content-Length: 2", "l: 1") + b"xy", 400, "Content-Length"),
    "clerr truncated body": (options("Content-Length: 100") + b"short", 400, "truncated body"),
    "multi01 two To": (options("To: <sip:other@example.com>"), 400, "more than one To"),
    "two Call-IDs": (options("i: other@x"), 400, "more than one Call-ID"),
    "quotbal": (options('To: "Mr. J. User <sip:j.user@example.com>', drop=("To",)), 400, "To"),
    "baddn": (options("From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43", drop=("From",)), 400, "From"),
    "badaspec": (options('To: "Watson, Thomas" < sip:t.watson@example.org >', drop=("To",)), 400, "To"),
    "regbadct": (options("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E"), 400, "Contact"),
    "bad Route": (options("Route: <sip:a@b"), 400, "Route"),
    "bad Record-Route": (options("Record-Route: sip:a@b, junk"), 400, "Record-Route"),
    "badinv01 Via garbage": (options("Via: SIP/2.0/UDP 192.0.2.15;;,;,,", drop=("Via",)), 400, "Via"),
    "empty Via": (options("Via: ", drop=("Via",)), 400, "Via"),
    "Call-ID with space": (options("Call-ID: a b", drop=("Call-ID",)), 400, "Call-ID"),
    "unksm2 unknown scheme in To": (options("To: <http://www.example.com>", drop=("To",)), 400, "To"),
    "status 99": (options(start="SIP/2.0 099 Low"), 400, "out of range"),
    "status 700": (options(start="SIP/2.0 700 High"), 400, "out of range"),
    "status line without code": (options(start="SIP/2.0 OK"), 400, "status line"),
    "request line two parts": (options(start="OPTIONS sip:a@b"), 400, "request line"),
    "bad method chars": (options(start="OP(TIONS sip:a@b SIP/2.0"), 400, "method"),
    "http request": (options(start="GET / HTTP/1.1"), 400, "version"),
    "header without colon": (options("NoColonHere"), 400, "bad header line"),
    "header name with space": (options("Bad Name: x"), 400, "bad header line"),
    "continuation first": (b"OPTIONS sip:a@b SIP/2.0\r\n folded: x\r\n\r\n", 400, "continuation"),
    "not UTF-8": (options("Subject: x").replace(b"Subject: x", b"Subject: \xe4\xff"), 400, "UTF-8"),
    "raw NUL": (options("Subject: a\x00b"), 400, "control character"),
    "bare CR": (options("Subject: a\rb"), 400, "CR without LF"),
    "bare CR ending a line": (options("Subject: a\r"), 400, "CR without LF"),
    "empty": (b"", 400, "empty"),
    "only keepalive": (b"\r\n\r\n", 400, "empty"),
    "oversize": (options("X-Big: " + "a" * 8000) + b"x" * (MAX_MESSAGE_BYTES - 8200), 513, "over"),
    "line too long": (options("X-Big: " + "a" * MAX_HEADER_LINE), 513, "too long"),
    "folded line too long": (options("X-Big: " + "a" * 5000 + "\r\n " + "b" * 5000), 513, "too long"),
    "too many headers": (options(*["X-H: 1"] * MAX_HEADERS), 513, "too many"),
}


@pytest.mark.parametrize("data, status, words", REJECTS.values(), ids=REJECTS.keys())
def test_parse_rejects(data, status, words):
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert caught.value.status == status
    assert words in caught.value.reason == str(caught.value)


def test_rejected_request_can_still_be_answered():
    with pytest.raises(SipParseError) as caught:
        parse_message(options(start="OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0"))
    error = caught.value
    response = make_response(error.message, error.status, error.reason)
    parsed = parse_message(response.to_bytes())
    assert (parsed.status, parsed.reason, parsed.cseq) == (416, error.reason, (1, "OPTIONS"))
    assert parsed.top_via.branch == "z9hG4bKopt"
    with pytest.raises(SipParseError) as caught:
        parse_message(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert caught.value.message is None


# --- serialising ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", CORPUS, ids=range(len(CORPUS)))
def test_round_trip(data):
    message = parse_message(data)
    again = parse_message(message.to_bytes())
    assert again == message
    assert again.to_bytes() == message.to_bytes()


def test_to_bytes_writes_content_length_from_the_body():
    message = parse_message(INVITE)
    message.body = b"v=0\r\n"
    data = message.to_bytes()
    assert data.count(b"Content-Length") == 1 and b"Content-Length: 5\r\n" in data
    assert data.split(b"\r\n\r\n")[0].endswith(b"\r\nContent-Length: 5")  # where it was: last
    message.headers.add("l", "999")
    assert message.to_bytes() == data  # a second, wrong one is dropped
    request = SipRequest("OPTIONS", "sip:a@b", Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")]))
    assert request.to_bytes() == (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    )
    assert SipResponse(180, "Ringing").to_bytes() == b"SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n"


def test_to_bytes_refuses_line_breaks_in_the_start_line():
    with pytest.raises(ValueError):
        SipRequest("OPTIONS", "sip:a@b SIP/2.0\r\nVia: x").to_bytes()


def test_views_raise_sip_parse_error_on_built_messages():
    message = SipRequest("INVITE", "http://x", Headers([("CSeq", "x INVITE"), ("Via", "junk"), ("From", "<sip:a@b")]))
    for view in ("cseq", "vias", "top_via", "from_addr", "to_addr", "request_uri"):
        with pytest.raises(SipParseError):
            getattr(message, view)
    with pytest.raises(SipParseError) as caught:
        message.request_uri
    assert caught.value.status == 416
    empty = SipRequest("OPTIONS", "sip:a@b")
    views = (empty.call_id, empty.cseq, empty.vias, empty.top_via, empty.contact, empty.content_type)
    assert views == (None, None, [], None, None, None)


# --- make_response --------------------------------------------------------------------------


def test_make_response_copies_per_rfc3261_8_2_6():
    request = parse_message(INVITE)
    response = make_response(request, 180, to_tag="a6c85cf")
    assert (response.status, response.reason, response.version) == (180, "Ringing", "SIP/2.0")
    assert response.headers.items() == [
        ("Via", "SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK776asdhds;rport"),
        ("Via", "SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.5"),
        ("Record-Route", "<sip:pbx.example.com;lr>"),
        ("To", '"Customer Service" <sip:service@agent.example.com>;tag=a6c85cf'),
        ("From", '"Alice" <sip:+8613800138000@pbx.example.com>;tag=1928301774'),
        ("Call-ID", "a84b4c76e66710@pc33.example.com"),
        ("CSeq", "314159 INVITE"),
    ]
    parsed = parse_message(response.to_bytes())
    assert parsed.to_addr.tag == "a6c85cf" and parsed.vias == request.vias


def test_make_response_tags_and_record_route():
    request = parse_message(INVITE)
    trying = make_response(request, 100, to_tag="never")
    assert trying.to_addr.tag is None and "Record-Route" not in trying.headers
    assert "Record-Route" in make_response(request, 200, to_tag="t").headers
    assert "Record-Route" in make_response(request, 101).headers
    busy = make_response(request, 486, to_tag="t")
    assert busy.to_addr.tag == "t" and "Record-Route" not in busy.headers
    assert "Record-Route" not in make_response(request, 302).headers
    in_dialog = parse_message(ACK.replace(b"ACK", b"BYE"))
    assert make_response(in_dialog, 200, to_tag="other").to_addr.tag == "a6c85cf"
    bare = parse_message(IPV6_REGISTER)
    assert make_response(bare, 200, to_tag="x1").header("To") == "sip:user@example.com;tag=x1"  # addr-spec


def test_make_response_extras():
    request = parse_message(options("Timestamp: 54"))
    assert make_response(request, 100).header("Timestamp") == "54"
    assert make_response(request, 200).header("Timestamp") is None
    response = make_response(
        request,
        200,
        "Fine",
        to_tag="x",
        headers=[("Allow", "INVITE, ACK, BYE"), ("k", "replaces")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert response.reason == "Fine"
    assert response.headers.items()[-3:] == [
        ("Allow", "INVITE, ACK, BYE"),
        ("Supported", "replaces"),
        ("Content-Type", "application/sdp"),
    ]
    parsed = parse_message(response.to_bytes())
    assert parsed.body == b"v=0\r\n" and parsed.content_type == "application/sdp"
    assert make_response(request, 299).reason == "OK"  # unknown code: the class's phrase
    assert make_response(request, 555).reason == REASONS[555]
    with pytest.raises(ValueError):
        make_response(request, 99)
    with pytest.raises(ValueError):
        make_response(request, 200, headers=[("X", "a\r\nb")])


def test_reasons_cover_the_common_codes():
    common = [100, 180, 181, 182, 183, 200, 202, 400, 401, 403, 404, 405, 407, 408, 413, 415, 416]
    for code in common + [480, 481, 486, 487, 488, 491, 500, 501, 503, 505, 513, 603]:
        assert REASONS[code]


def test_identifiers():
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(re.fullmatch(r"z9hG4bK[0-9a-f]{16}", b) for b in branches)
    assert re.fullmatch(r"[0-9a-f]{10}", new_tag()) and new_tag() != new_tag()
    assert re.fullmatch(r"[0-9a-f]{32}@192\.0\.2\.10", new_call_id("192.0.2.10"))
    assert re.fullmatch(r"[0-9a-f]{32}", new_call_id(""))


# --- StreamParser ---------------------------------------------------------------------------

STREAM = [INVITE, BYE_COMPACT, OK_INVITE, INTMETH, NOTIFY_SIPFRAG]


def test_stream_whole_and_byte_by_byte():
    data = b"".join(STREAM)
    expected = [parse_message(m) for m in STREAM]
    assert StreamParser().feed(data) == expected
    parser = StreamParser()
    got = [m for i in range(len(data)) for m in parser.feed(data[i : i + 1])]
    assert got == expected


def test_stream_random_splits_and_keepalives():
    rng = random.Random(5626)
    expected = [parse_message(m) for m in STREAM]
    for _ in range(30):
        data = b"\r\n\r\n".join(STREAM) + b"\r\n"  # CRLFCRLF pings between messages, a CRLF pong
        parser = StreamParser()
        cuts = sorted(rng.sample(range(1, len(data)), 8))
        got = [m for a, b in zip([0, *cuts], [*cuts, len(data)]) for m in parser.feed(data[a:b])]
        assert got == expected
    assert StreamParser().feed(b"\r\n\r\n") == []


def test_stream_body_waits_for_content_length():
    parser = StreamParser()
    head, body = INVITE.split(b"\r\n\r\n", 1)
    assert parser.feed(head + b"\r\n\r\n") == []
    assert parser.feed(body[:-1]) == []
    assert parser.feed(body[-1:] + BYE_COMPACT[:10])[0].body == body
    assert parser.feed(BYE_COMPACT[10:])[0].method == "BYE"


@pytest.mark.parametrize(
    "data, status, words",
    [
        (options(), 400, "missing Content-Length"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "does not start"),  # TLS ClientHello
        (b"GET / HTTP/1.1\r\nHost: x\r\n", 400, "version"),
        (b"HELLO" + b"x" * (MAX_HEADER_LINE + 1), 513, "too long"),
        (b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * (MAX_MESSAGE_BYTES // 6 + 1), 513, "over"),
        (options(f"Content-Length: {MAX_MESSAGE_BYTES}"), 413, "over"),
        (options("Content-Length: -1"), 400, "Content-Length"),
    ],
)
def test_stream_rejects(data, status, words):
    parser = StreamParser()
    with pytest.raises(SipParseError) as caught:
        for i in range(0, len(data), 1000):
            parser.feed(data[i : i + 1000])
    assert caught.value.status == status and words in caught.value.reason
    with pytest.raises(SipParseError):  # the stream stays refused
        parser.feed(BYE_COMPACT)


def test_stream_error_after_good_messages_is_raised_next_time():
    parser = StreamParser()
    assert [m.method for m in parser.feed(BYE_COMPACT + b"garbage line\r\n\r\n")] == ["BYE"]
    with pytest.raises(SipParseError):
        parser.feed(b"")


def test_stream_max_message():
    parser = StreamParser(max_message=len(INVITE) - 1)
    assert len(parser.feed(BYE_COMPACT)) == 1
    with pytest.raises(SipParseError) as caught:
        parser.feed(INVITE)
    assert caught.value.status == 413


# --- digest authentication ------------------------------------------------------------------

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


def _params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}


def test_challenge_parse():
    challenge = Challenge.parse(RFC2617_CHALLENGE)
    assert challenge == Challenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        algorithm="MD5",
        qop=["auth", "auth-int"],
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
        stale=False,
    )
    other = Challenge.parse('digest  realm="a\\"b", nonce=abc, algorithm=sha-256-SESS, stale=TRUE, domain="sip:x"')
    assert other == Challenge('a"b', "abc", "SHA-256-sess", [], None, True)
    challenge = Challenge.parse(parse_message(UNAUTHORIZED).header("WWW-Authenticate"))
    assert (challenge.realm, challenge.opaque, challenge.stale) == ("example.com", "", False)


@pytest.mark.parametrize(
    "value", ['Basic realm="x"', "Digest", 'Digest nonce="n"', 'Digest realm="r"', 'Digest realm="r", nonce="n", x y', ""]
)
def test_challenge_rejects(value):
    with pytest.raises(ValueError):
        Challenge.parse(value)


def test_authorization_rfc2617_example():
    challenge = Challenge.parse(RFC2617_CHALLENGE)
    value = authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b")
    assert _params(value) == {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
        "response": "6629fae49393a05397450978507c4ef1",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
        "algorithm": "MD5",
    }


@pytest.mark.parametrize(
    "alg, response",
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_authorization_rfc7616_example(alg, response):
    challenge = Challenge.parse(RFC7616_CHALLENGE.format(alg=alg))
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    value = authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce=cnonce)
    params = _params(value)
    assert (params["response"], params["algorithm"], params["qop"], params["nc"]) == (response, alg, "auth", "00000001")
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_authorization_without_qop_and_sess():
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5("agent:example.com:s3cret"), md5("REGISTER:sip:example.com")
    plain = _params(authorization(Challenge("example.com", "n0nce"), "REGISTER", "sip:example.com", "agent", "s3cret"))
    assert plain["response"] == md5(f"{ha1}:n0nce:{ha2}")
    assert "qop" not in plain and "cnonce" not in plain and "nc" not in plain and "opaque" not in plain
    sess_challenge = Challenge("example.com", "n0nce", "MD5-sess", ["auth"])
    sess = _params(authorization(sess_challenge, "REGISTER", "sip:example.com", "agent", "s3cret", nc=2, cnonce="c"))
    assert sess["nc"] == "00000002"
    assert sess["response"] == md5(f"{md5(f'{ha1}:n0nce:c')}:n0nce:00000002:c:auth:{ha2}")
    first, second = (_params(authorization(Challenge("r", "n", qop=["auth"]), "BYE", "sip:a@b", "u", "p")) for _ in "12")
    assert first["cnonce"] != second["cnonce"]  # fresh cnonce when none is given


def test_authorization_refuses_what_it_cannot_do():
    with pytest.raises(ValueError):
        authorization(Challenge("r", "n", qop=["auth-int"]), "INVITE", "sip:a@b", "u", "p")
    with pytest.raises(ValueError):
        authorization(Challenge("r", "n", algorithm="SHA-512-256"), "INVITE", "sip:a@b", "u", "p")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_server_round_trip(algorithm):
    clock = FakeClock()
    users = {"pbx": 'pa ss"word', "other": "x"}
    server = DigestServer("agent.example.com", users, nonce_ttl_s=60, algorithm=algorithm, clock=clock)
    header = server.challenge()
    # The challenge travels in a real 401 and back.
    request = parse_message(INVITE)
    unauthorized = make_response(request, 401, to_tag="t", headers=[("WWW-Authenticate", header)])
    challenge = Challenge.parse(parse_message(unauthorized.to_bytes()).header("WWW-Authenticate"))
    assert (challenge.realm, challenge.algorithm, challenge.qop) == ("agent.example.com", algorithm, ["auth"])
    answer = authorization(challenge, "INVITE", request.uri, "pbx", 'pa ss"word')
    assert server.check("INVITE", answer) == "pbx"
    assert server.check("INVITE", answer, request_uri=request.uri) == "pbx"
    clock.now += 59
    assert server.check("INVITE", answer) == "pbx"
    assert server.check("BYE", answer) is None  # the digest covers the method
    assert server.check("INVITE", answer, request_uri="sip:elsewhere@example.com") is None
    assert server.check("INVITE", authorization(challenge, "INVITE", request.uri, "pbx", "wrong")) is None
    assert server.check("INVITE", authorization(challenge, "INVITE", request.uri, "nobody", 'pa ss"word')) is None
    clock.now += 2
    assert server.check("INVITE", answer) is None  # expired


def test_digest_server_rejects_forged_and_foreign_nonces():
    clock = FakeClock()
    server = DigestServer("r", {"u": "p"}, clock=clock)
    challenge = Challenge.parse(server.challenge())
    good = authorization(challenge, "INVITE", "sip:a@b", "u", "p")
    assert server.check("INVITE", good) == "u"
    # Someone who knows the password but makes up a nonce (or ages one) is still refused.
    tampered = challenge.nonce[:-2] + ("AA" if challenge.nonce[-2:] != "AA" else "BB")
    for nonce in ("forged", tampered, "\u00e9t\u00e9", ""):
        answer = authorization(Challenge("r", nonce, qop=["auth"]), "INVITE", "sip:a@b", "u", "p")
        assert server.check("INVITE", answer) is None
    other = DigestServer("r", {"u": "p"}, clock=clock)
    assert other.check("INVITE", good) is None  # another process's key
    clock.now -= 10
    assert server.check("INVITE", good) is None  # issued "in the future"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v.replace('realm="r"', 'realm="elsewhere"'),
        lambda v: v.replace("algorithm=MD5", "algorithm=SHA-256"),
        lambda v: v.replace("qop=auth, ", ""),
        lambda v: v.replace("nc=00000001", "nc=1"),
        lambda v: re.sub(r', cnonce="[^"]*"', "", v),
        lambda v: re.sub(r'response="[^"]*"', 'response="\u00e9"', v),
        lambda v: v.replace("Digest", "Basic"),
        lambda v: v + ", junk junk",
        lambda v: "",
    ],
)
def test_digest_server_rejects_malformed_answers(mangle):
    server = DigestServer("r", {"u": "p"})
    good = authorization(Challenge.parse(server.challenge()), "INVITE", "sip:a@b", "u", "p")
    assert server.check("INVITE", good) == "u"
    assert server.check("INVITE", mangle(good)) is None


def test_digest_server_refuses_unsupported_algorithm():
    with pytest.raises(ValueError):
        DigestServer("r", {}, algorithm="SHA-1")


# --- fuzzing --------------------------------------------------------------------------------

_SPICE = [
    *(bytes([c]) for c in b'\r\n \t:;,<>"\\%@[]=?/\x00\xff'),
    *(b"%0", b"\xe4\xb8", b"\r\n ", b"\r\n\r\n", b"SIP/2.0", b"sip:", b"Content-Length: 99999\r\n", b"l: -1\r\n"),
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        pos = rng.randrange(len(out) + 1)
        if op == 0:  # flip bytes, mostly within ASCII so that parsing goes past the decoding
            for _ in range(rng.randint(1, 4)):
                if out:
                    out[rng.randrange(len(out))] ^= rng.randint(1, 127 if rng.random() < 0.8 else 255)
        elif op == 1:  # truncate
            del out[pos:]
        elif op == 2:  # insert a character that means something to the grammar
            out[pos:pos] = rng.choice(_SPICE)
        elif op in (3, 4, 5):  # duplicate, delete or swap lines
            lines = bytes(out).split(b"\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == 3:
                lines.insert(j, lines[i])
            elif op == 4:
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            out = bytearray(b"\r\n".join(lines))
        elif op == 6:  # a huge header, or a great many
            size = rng.choice([100, MAX_HEADER_LINE + 10, MAX_MESSAGE_BYTES])
            extra = b"X-Big: " + b"a" * size + b"\r\n" if rng.random() < 0.5 else b"X-H: 1\r\n" * (size // 32)
            first = out.find(b"\n") + 1
            out[first:first] = extra
        elif op == 7:  # a number becomes huge, negative or empty
            spans = [m.span() for m in re.finditer(rb"[0-9]+", out)]
            if spans:
                a, b = rng.choice(spans)
                out[a:b] = rng.choice([b"", b"-1", b"99999999999999999999999", b"0", b"4294967296"])
        elif op == 8:  # random bytes, mostly ASCII
            top = 128 if rng.random() < 0.8 else 256
            out[pos : pos + rng.randint(0, 8)] = bytes(rng.randrange(top) for _ in range(rng.randint(1, 8)))
        else:  # splice two messages
            other = rng.choice(CORPUS)
            out = out[:pos] + other[rng.randrange(len(other)) :]
    return bytes(out)


def _check_parsed(message: SipRequest | SipResponse) -> None:
    """A message that parsed keeps the contract: its views work and it serialises stably."""
    views = ["vias", "from_addr", "to_addr", "contact", "cseq", "content_type"]
    for view in views + ["request_uri"] * isinstance(message, SipRequest):
        getattr(message, view)
    data = message.to_bytes()
    assert parse_message(data).to_bytes() == data


def test_fuzz_parsers_only_raise_sip_parse_error():
    rng = random.Random(4475)
    parsed = refused = 0
    slowest = 0.0
    started = time.perf_counter()
    for case in range(20000):
        data = _mutate(rng, rng.choice(CORPUS))
        t0 = time.perf_counter()
        try:
            message = parse_message(data)
        except SipParseError as e:
            assert 400 <= e.status <= 599
            refused += 1
        else:
            parsed += 1
            if case % 4 == 0:
                _check_parsed(message)
        parser = StreamParser()
        cut = rng.randrange(len(data) + 1)
        try:
            for message in parser.feed(data[:cut]) + parser.feed(data[cut:]):
                assert isinstance(message, (SipRequest, SipResponse))
        except SipParseError:
            pass
        slowest = max(slowest, time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    assert parsed > 2000 and refused > 2000  # the mutations reach both outcomes
    assert slowest < 0.5, f"one case took {slowest:.3f} s"
    assert elapsed < 30, f"{elapsed:.1f} s"
