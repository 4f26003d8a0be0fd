"""SIP media: G.711, SDP offer/answer, RFC 4733 key presses, the jitter buffer, and RtpStream over
loopback UDP (two streams talking, or one stream and a raw socket playing the peer)."""

from __future__ import annotations

import asyncio
import time
import warnings

import av
import numpy as np
import pytest
from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpRrPacket, RtcpSdesPacket, RtcpSenderInfo, RtcpSrPacket, RtpPacket

from telephony.rtp import g711
from telephony.rtp.dtmf import EVENTS, DtmfDigitEvent, DtmfEvent, DtmfReceiver, dtmf_packets
from telephony.rtp.jitter import JitterBuffer
from telephony.rtp.sdp import AudioCodec, NegotiatedMedia, SdpError, SdpSession, parse_sdp
from telephony.rtp.stream import ReceptionStats, RtpSender, RtpStream, TimestampMapper
from voiceagent.audio import AudioFrame, float_to_pcm16, pcm16_to_float

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated, still in 3.11: the reference G.711 implementation

PCMU = AudioCodec(0, "PCMU")
PCMA = AudioCodec(8, "PCMA")
EVENT = AudioCodec(101, "telephone-event", fmtp="0-16")


def run(coro):
    """Run a test's coroutine; the raw peer sockets it opened are closed after it."""
    async def main():
        try:
            return await asyncio.wait_for(coro, 20)
        finally:
            while _PEERS:
                _PEERS.pop().transport.close()
            await asyncio.sleep(0)  # let the transports finish closing
    return asyncio.run(main())


# -- G.711 --------------------------------------------------------------------------------------

ALL_INT16 = np.arange(-32768, 32768, dtype="<i2")


def _floats_for_every_int16() -> np.ndarray:
    """Floats that float_to_pcm16 turns into each of -32767..32767 (it never yields -32768)."""
    values = np.arange(-32767, 32768, dtype=np.float64)
    return ((values + 0.5 * np.sign(values)) / 32767).astype(np.float32)


def test_ulaw_tables_match_audioop_for_all_values():
    assert g711._ULAW_ENCODE.tobytes() == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)
    codes = bytes(range(256))
    assert np.array_equal(g711.ulaw_decode(codes), pcm16_to_float(audioop.ulaw2lin(codes, 2)))


def test_alaw_tables_match_audioop_for_all_values():
    assert g711._ALAW_ENCODE.tobytes() == audioop.lin2alaw(ALL_INT16.tobytes(), 2)
    codes = bytes(range(256))
    assert np.array_equal(g711.alaw_decode(codes), pcm16_to_float(audioop.alaw2lin(codes, 2)))


@pytest.mark.parametrize("name,reference", [("PCMU", audioop.lin2ulaw), ("PCMA", audioop.lin2alaw)])
def test_float_encoders_equal_audioop_after_the_projects_pcm16_conversion(name, reference):
    floats = _floats_for_every_int16()
    pcm = float_to_pcm16(floats)
    assert np.array_equal(pcm, np.arange(-32767, 32768))  # every reachable 16-bit value
    encode, _ = g711.CODECS[name]
    assert encode(floats) == reference(pcm.tobytes(), 2)
    assert encode(np.array([-3.0, 3.0], dtype=np.float32)) == reference(float_to_pcm16(np.array([-1.0, 1.0])).tobytes(), 2)


@pytest.mark.parametrize("name,av_codec", [("PCMU", "pcm_mulaw"), ("PCMA", "pcm_alaw")])
def test_decoders_equal_pyav(name, av_codec):
    """The same numbers aiortc's own G.711 (PyAV) would give."""
    ctx = av.CodecContext.create(av_codec, "r")
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    frames = ctx.decode(av.Packet(bytes(range(256))))
    reference = np.concatenate([f.to_ndarray().ravel() for f in frames])
    assert np.array_equal(g711.CODECS[name][1](bytes(range(256))), pcm16_to_float(reference))


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_round_trip_keeps_a_tone(name):
    encode, decode = g711.CODECS[name]
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 8000)).astype(np.float32)
    data = encode(tone)
    out = decode(data)
    assert len(data) == 1600 and out.dtype == np.float32
    snr = 10 * np.log10(np.sum(tone**2) / np.sum((tone - out) ** 2))
    assert snr > 35  # G.711 is about 38 dB on a loud tone
    assert encode(np.zeros(160, np.float32)) == (b"\xff" if name == "PCMU" else b"\xd5") * 160


# -- SDP: real-world descriptions ------------------------------------------------------------

def sdp(text: str, crlf: bool = True) -> str:
    lines = [line.strip() for line in text.strip().splitlines()]
    return ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")


BARESIP = sdp("""
    v=0
    o=- 1715791412 3436853745 IN IP4 192.168.1.23
    s=-
    c=IN IP4 192.168.1.23
    t=0 0
    m=audio 10478 RTP/AVP 96 9 0 8 101
    b=AS:64
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp:10479
    a=sendrecv
    a=label:1
    a=ssrc:1887461251 cname:4d8b3e1a-7e2f-4f7e-9bd0-2c1f0f1a9a77
    a=rtcp-rsize
    a=ptime:20
""")

ASTERISK = sdp("""
    v=0
    o=- 1894378207 1894378207 IN IP4 203.0.113.10
    s=Asterisk
    c=IN IP4 203.0.113.10
    t=0 0
    m=audio 17630 RTP/AVP 8 0 3 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

# A Cisco/Polycom desk phone: media-level c=, static types without rtpmap, G.729 first, a video
# line it has disabled, TIAS bandwidth.
DESK_PHONE = sdp("""
    v=0
    o=Cisco-SIPUA 21364 0 IN IP4 10.20.30.40
    s=SIP Call
    b=AS:4064
    t=0 0
    m=audio 25010 RTP/AVP 18 0 8 101
    c=IN IP4 10.20.30.40
    b=TIAS:64000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:18 annexb=no
    a=fmtp:101 0-15
    a=sendrecv
    m=video 0 RTP/AVP 126 97
    c=IN IP4 10.20.30.40
    a=rtpmap:126 H264/90000
    a=rtpmap:97 H264/90000
    a=inactive
""")

FREESWITCH = sdp("""
    v=0
    o=FreeSWITCH 1715763330 1715763331 IN IP4 198.51.100.7
    s=FreeSWITCH
    c=IN IP4 198.51.100.7
    t=0 0
    m=audio 24560 RTP/AVP 0 8 96 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10; maxptime=40
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=sendrecv
    a=rtcp:24561 IN IP4 198.51.100.7
""", crlf=False)

LINPHONE_IPV6 = sdp("""
    v=0
    o=alice 3203 1190 IN IP6 2001:db8::10
    s=Talk
    c=IN IP6 2001:db8::10
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    m=audio 7078 RTP/AVP 96 97 98 0 8 101 99 100
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 speex/16000
    a=rtpmap:98 speex/8000
    a=rtpmap:101 telephone-event/48000
    a=rtpmap:99 telephone-event/16000
    a=rtpmap:100 telephone-event/8000
    a=rtcp-fb:* trr-int 1000
""")

SESSION_LEVEL_SENDONLY = sdp("""
    v=0
    o=sbc 12 13 IN IP4 192.0.2.5
    s=-
    c=IN IP4 192.0.2.5
    t=0 0
    a=sendonly
    m=audio 40000 RTP/AVP 0 101
    a=rtpmap:101 telephone-event/8000
""")

RFC2543_HOLD = sdp("""
    v=0
    o=oldphone 12 14 IN IP4 192.0.2.5
    s=-
    c=IN IP4 0.0.0.0
    t=0 0
    m=audio 40000 RTP/AVP 0 101
    a=rtpmap:101 telephone-event/8000
""")


def test_parse_baresip():
    offer = parse_sdp(BARESIP)
    assert (offer.address, offer.port, offer.rtcp_port, offer.ptime) == ("192.168.1.23", 10478, 10479, 20)
    assert [(c.payload_type, c.name, c.clock_rate, c.channels) for c in offer.codecs] == [
        (96, "OPUS", 48000, 2), (9, "G722", 8000, 1), (0, "PCMU", 8000, 1), (8, "PCMA", 8000, 1),
        (101, "telephone-event", 8000, 1)]
    assert offer.codecs[0].fmtp == "stereo=1;sprop-stereo=1" and offer.codecs[-1].fmtp == "0-15"
    assert (offer.session_id, offer.session_version) == ("1715791412", 3436853745)
    assert offer.direction == "sendrecv" and not offer.on_hold


def test_parse_desk_phone_static_types_and_media_level_address():
    offer = parse_sdp(DESK_PHONE)
    assert offer.address == "10.20.30.40" and offer.port == 25010
    assert [(c.payload_type, c.name) for c in offer.codecs] == [(18, "G729"), (0, "PCMU"), (8, "PCMA"),
                                                                 (101, "telephone-event")]
    assert offer.codecs[0].fmtp == "annexb=no"
    assert offer.ptime is None and offer.rtcp_port is None and offer.session_version == 0


def test_parse_freeswitch_with_bare_newlines():
    offer = parse_sdp(FREESWITCH)
    assert offer.port == 24560 and offer.rtcp_port == 24561
    assert [c.name for c in offer.codecs] == ["PCMU", "PCMA", "OPUS", "telephone-event"]


def test_parse_ipv6():
    offer = parse_sdp(LINPHONE_IPV6)
    assert offer.address == "2001:db8::10" and offer.port == 7078
    assert [c.payload_type for c in offer.codecs if c.name == "telephone-event"] == [101, 99, 100]


def test_session_level_direction_applies_and_media_level_overrides_it():
    offer = parse_sdp(SESSION_LEVEL_SENDONLY)
    assert offer.direction == "sendonly" and offer.on_hold
    overridden = SESSION_LEVEL_SENDONLY.replace("a=rtpmap:101", "a=sendrecv\r\na=rtpmap:101")
    assert parse_sdp(overridden).direction == "sendrecv"


def test_rfc2543_hold_and_disabled_stream_are_on_hold():
    hold = parse_sdp(RFC2543_HOLD)
    assert hold.address == "0.0.0.0" and hold.direction == "sendrecv" and hold.on_hold
    assert parse_sdp(ASTERISK.replace("m=audio 17630", "m=audio 0")).on_hold
    assert parse_sdp(ASTERISK.replace("a=sendrecv", "a=inactive")).on_hold


@pytest.mark.parametrize("text,message", [
    ("", "not an SDP"),
    ("INVITE sip:bob@example.com SIP/2.0\r\n", "not an SDP"),
    ("v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "version"),
    (ASTERISK.replace("o=- 1894378207 1894378207 IN IP4 203.0.113.10\r\n", ""), "no o= line"),
    (ASTERISK.replace("m=audio", "m=video"), "no audio stream"),
    (ASTERISK.replace("c=IN IP4 203.0.113.10\r\n", ""), "no connection address"),
    (ASTERISK.replace("17630", "17x30"), "bad m= port"),
    (ASTERISK.replace("17630", "70000"), "out of range"),
    (ASTERISK.replace("RTP/AVP 8 0 3 101", "RTP/AVP 8 zero"), "bad payload type"),
    (ASTERISK.replace("1894378207 IN", "v2 IN"), "session version"),
    (ASTERISK.replace("PCMA/8000", "PCMA/eight"), "clock rate"),
    (ASTERISK.replace("a=ptime:20", "a=ptime:twenty"), "bad ptime"),
    (ASTERISK.replace("c=IN IP4 203.0.113.10", "c=IN ATM 47"), "bad c= line"),
    (ASTERISK.replace("RTP/AVP", "RTP/SAVP"), "no RTP/AVP audio stream"),
])
def test_unusable_descriptions_raise_sdp_error(text, message):
    with pytest.raises(SdpError, match=message):
        parse_sdp(text)
    assert issubclass(SdpError, ValueError)


# -- SDP: offer/answer --------------------------------------------------------------------------

def lines(text: str) -> list[str]:
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return text.split("\r\n")[:-1]


def test_offer_lists_our_codecs_and_telephone_event():
    session = SdpSession("10.0.0.5", 10000)
    offer = lines(session.offer())
    assert offer == ["v=0", f"o=voiceagent {session.session_id} 1 IN IP4 10.0.0.5", "s=voiceagent",
                     "c=IN IP4 10.0.0.5", "t=0 0", "m=audio 10000 RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000",
                     "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
                     "a=ptime:20", "a=sendrecv"]
    ours = parse_sdp(session.offer("sendonly"))
    assert ours.direction == "sendonly" and ours.session_version == 2


def test_offer_ipv6_and_codec_choice():
    session = SdpSession("2001:db8::5", 10002, codecs=("PCMA",), dtmf=False)
    offer = lines(session.offer())
    assert "c=IN IP6 2001:db8::5" in offer and offer[1].endswith("IN IP6 2001:db8::5")
    assert "m=audio 10002 RTP/AVP 8" in offer and not any("telephone-event" in line for line in offer)
    with pytest.raises(ValueError):
        SdpSession("10.0.0.5", 10000, codecs=("G729",))


def test_answer_takes_the_offers_first_supported_codec():
    session = SdpSession("10.0.0.5", 10000)
    text, media = session.answer(ASTERISK)  # PCMA before PCMU in the offer
    assert media == NegotiatedMedia("203.0.113.10", 17630, AudioCodec(8, "PCMA"), AudioCodec(101, "telephone-event", fmtp="0-16"),
                                    "sendrecv", "sendrecv", 20, None)
    assert lines(text)[5:] == ["m=audio 10000 RTP/AVP 8 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
                               "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]
    _, media = SdpSession("10.0.0.5", 10000).answer(BARESIP)  # opus and G.722 first: not ours
    assert media.codec.name == "PCMU" and media.remote_rtcp_port == 10479


def test_answer_uses_the_offerers_telephone_event_type_at_8000():
    text, media = SdpSession("10.0.0.5", 10000).answer(LINPHONE_IPV6)
    assert media.dtmf is not None and media.dtmf.payload_type == 100
    assert media.remote_address == "2001:db8::10" and media.codec.name == "PCMU"
    assert "m=audio 10000 RTP/AVP 0 100" in lines(text)
    _, media = SdpSession("10.0.0.5", 10000, dtmf=False).answer(ASTERISK)
    assert media.dtmf is None


def test_answer_declines_other_streams_one_line_each():
    text, media = SdpSession("10.0.0.5", 10000).answer(DESK_PHONE)
    answer = lines(text)
    assert media.codec == AudioCodec(0, "PCMU") and media.dtmf is not None and media.dtmf.payload_type == 101
    assert [line for line in answer if line.startswith("m=")] == ["m=audio 10000 RTP/AVP 0 101", "m=video 0 RTP/AVP 126"]


@pytest.mark.parametrize("theirs,ours", [("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"),
                                         ("inactive", "inactive")])
def test_answer_direction_is_the_complement(theirs, ours):
    text, media = SdpSession("10.0.0.5", 10000).answer(ASTERISK.replace("a=sendrecv", f"a={theirs}"))
    assert (media.local_direction, media.remote_direction) == (ours, theirs)
    assert lines(text)[-1] == f"a={ours}"


def test_answer_direction_we_ask_for_is_limited_by_theirs():
    _, media = SdpSession("10.0.0.5", 10000).answer(ASTERISK, direction="sendonly")  # we hold them
    assert media.local_direction == "sendonly"
    _, media = SdpSession("10.0.0.5", 10000).answer(SESSION_LEVEL_SENDONLY, direction="sendonly")
    assert media.local_direction == "inactive"


def test_answer_rfc2543_hold_means_they_receive_nothing():
    text, media = SdpSession("10.0.0.5", 10000).answer(RFC2543_HOLD)
    assert (media.remote_address, media.remote_direction, media.local_direction) == ("0.0.0.0", "sendonly", "recvonly")
    assert "a=recvonly" in lines(text)


def test_answer_to_a_disabled_stream_keeps_it_disabled():
    text, media = SdpSession("10.0.0.5", 10000).answer(ASTERISK.replace("m=audio 17630", "m=audio 0"))
    assert media.remote_port == 0 and media.local_direction == media.remote_direction == "inactive"
    assert "m=audio 0 RTP/AVP 8" in lines(text)


def test_no_common_codec_is_488():
    g729_only = DESK_PHONE.replace("RTP/AVP 18 0 8 101", "RTP/AVP 18 101")
    session = SdpSession("10.0.0.5", 10000)
    with pytest.raises(SdpError, match="no common codec.*G729"):
        session.answer(g729_only)
    with pytest.raises(SdpError, match="no common codec"):
        SdpSession("10.0.0.5", 10000, codecs=("PCMA",)).answer(FREESWITCH.replace("RTP/AVP 0 8 96 101", "RTP/AVP 0 96"))


def test_every_description_bumps_the_version_and_keeps_the_session_id():
    session = SdpSession("10.0.0.5", 10000)
    first = parse_sdp(session.offer())
    second = parse_sdp(session.answer(ASTERISK)[0])
    third = parse_sdp(session.offer("sendonly"))
    assert first.session_id == second.session_id == third.session_id == session.session_id
    assert [first.session_version, second.session_version, third.session_version] == [1, 2, 3]


def test_offer_then_answer_between_two_sessions():
    alice, bob = SdpSession("10.0.0.5", 10000), SdpSession("10.0.0.6", 20000, codecs=("PCMA", "PCMU"))
    answer, bob_media = bob.answer(alice.offer())
    alice_media = alice.accept_answer(answer)
    assert bob_media.codec.name == alice_media.codec.name == "PCMU"  # the offerer's preference wins
    assert (alice_media.remote_address, alice_media.remote_port) == ("10.0.0.6", 20000)
    assert alice_media.dtmf is not None and alice_media.local_direction == "sendrecv"
    answer, _ = bob.answer(alice.offer("sendonly"))  # alice puts bob on hold
    held = alice.accept_answer(answer)
    assert (held.local_direction, held.remote_direction) == ("sendonly", "recvonly")


def test_accept_answer_rejections():
    alice = SdpSession("10.0.0.5", 10000)
    alice.offer()
    with pytest.raises(SdpError, match="declined"):
        alice.accept_answer(ASTERISK.replace("m=audio 17630", "m=audio 0"))
    with pytest.raises(SdpError, match="none of our codecs"):
        alice.accept_answer(ASTERISK.replace("RTP/AVP 8 0 3 101", "RTP/AVP 3"))


# -- RFC 4733 key presses -------------------------------------------------------------------

# A key press "5" then "#" as a Polycom sent them (Wireshark hex): payload type 101, one
# timestamp per press, an update every 20 ms, three end packets.
CAPTURED_PRESSES = [bytes.fromhex(h) for h in [
    "80e58c1f0009c8a06b8b4567050a00a0",  # marker, "5", 160
    "80658c200009c8a06b8b4567050a0140",  # 320
    "80658c210009c8a06b8b4567050a01e0",  # 480
    "80658c220009c8a06b8b4567050a0280",  # 640
    "80658c230009c8a06b8b4567058a0320",  # end, 800
    "80658c240009c8a06b8b4567058a0320",  # end again
    "80658c250009c8a06b8b4567058a0320",  # and again
    "80e58c260009d0c06b8b45670b0a00a0",  # marker, "#"
    "80658c270009d0c06b8b45670b0a0140",
    "80658c280009d0c06b8b45670b8a0190",  # end, 400
    "80658c290009d0c06b8b45670b8a0190",
    "80658c2a0009d0c06b8b45670b8a0190",
]]


def test_dtmf_event_pack_unpack():
    assert DtmfEvent.unpack(bytes.fromhex("058a0320")) == DtmfEvent(event=5, end=True, volume=10, duration=800)
    assert DtmfEvent(11, False, 10, 160).pack() == bytes.fromhex("0b0a00a0")
    assert DtmfEvent.unpack(bytes.fromhex("0b0a00a0")).digit == "#"
    assert DtmfEvent.unpack(bytes.fromhex("10000000")).digit is None  # hook flash
    for event in range(256):
        for end in (False, True):
            packed = DtmfEvent(event, end, 63, 0xFFFF).pack()
            assert DtmfEvent.unpack(packed) == DtmfEvent(event, end, 63, 0xFFFF)
    with pytest.raises(ValueError):
        DtmfEvent.unpack(b"\x05\x0a")
    assert EVENTS == "0123456789*#ABCD"


def test_receiver_reports_each_captured_press_once():
    receiver = DtmfReceiver()
    digits = []
    for data in CAPTURED_PRESSES + CAPTURED_PRESSES[4:7]:  # and the "5" end packets retransmitted late
        packet = RtpPacket.parse(data)
        assert packet.payload_type == 101
        digit = receiver.feed(packet.timestamp, bool(packet.marker), packet.payload)
        if digit:
            digits.append(digit)
    assert digits == ["5", "#"]


def test_receiver_without_the_marker_packet_and_same_key_twice():
    receiver = DtmfReceiver()
    press = lambda ts, marker, end, dur: receiver.feed(ts, marker, DtmfEvent(1, end, 10, dur).pack())
    assert press(1000, False, False, 320) == "1"  # the marker packet was lost
    assert press(1000, False, True, 800) is None
    assert press(3000, True, False, 160) == "1"  # the same key again: a new timestamp
    assert press(2000, False, True, 800) is None  # a straggler of an older press


def test_receiver_long_press_segments_are_one_press():
    """RFC 4733 2.5.1.3: past 0xFFFF timestamp units a press goes on under a new timestamp."""
    receiver = DtmfReceiver()
    assert receiver.feed(0, True, DtmfEvent(9, False, 10, 0xFFFF).pack()) == "9"
    assert receiver.feed(0xFFFF, False, DtmfEvent(9, False, 10, 800).pack()) is None
    assert receiver.feed(0xFFFF, False, DtmfEvent(9, True, 10, 1600).pack()) is None
    receiver.reset()
    assert receiver.feed(0xFFFF, False, DtmfEvent(9, True, 10, 1600).pack()) == "9"


def test_dtmf_packets_for_sending():
    packets = dtmf_packets("7", 100)
    assert [(p.marker, p.offset) for p in packets] == [(True, 400), (False, 800), (False, 800), (False, 800)]
    assert [DtmfEvent.unpack(p.payload) for p in packets] == [DtmfEvent(7, False, 10, 400)] + [DtmfEvent(7, True, 10, 800)] * 3
    long = dtmf_packets("a", 240)
    assert [p.offset for p in long] == [400, 800, 1200, 1600, 1920, 1920, 1920]
    short = dtmf_packets("*", 40)
    assert [(p.marker, DtmfEvent.unpack(p.payload).end) for p in short] == [(True, True), (False, True), (False, True)]
    for bad in ("x", "12", ""):
        with pytest.raises(ValueError):
            dtmf_packets(bad)
    with pytest.raises(ValueError):
        dtmf_packets("1", 9000)


# -- jitter buffer, reception statistics, timestamp mapping, sender ---------------------------

def test_jitter_buffer_reorders_and_drops_duplicates():
    jb: JitterBuffer[int] = JitterBuffer()
    out = []
    for seq in (10, 11, 13, 12, 12, 14, 11):
        jb.push(seq, seq, 0.0)
        out += jb.pop(0.0)
    assert out == [10, 11, 12, 13, 14]
    assert (jb.duplicates, jb.lost, jb.late) == (2, 0, 0)
    assert jb.next_deadline() is None


def test_jitter_buffer_gives_up_on_a_gap_after_max_wait():
    jb: JitterBuffer[int] = JitterBuffer(capacity=16, max_wait_s=0.06)
    jb.push(1, 1, 0.0)
    assert jb.pop(0.0) == [1]
    jb.push(3, 3, 0.02)
    jb.push(4, 4, 0.04)
    assert jb.pop(0.05) == []  # still hoping for 2
    assert jb.next_deadline() == pytest.approx(0.08)
    assert jb.pop(0.08) == [3, 4]
    assert jb.lost == 1
    assert not jb.push(2, 2, 0.09)  # too late now
    assert jb.late == 1 and jb.pop(0.1) == []
    jb.push(5, 5, 0.1)
    assert jb.pop(0.1) == [5]  # in order again: out at once


def test_jitter_buffer_full_skips_without_waiting():
    jb: JitterBuffer[int] = JitterBuffer(capacity=4, max_wait_s=10)
    jb.push(0, 0, 0.0)
    jb.pop(0.0)
    for seq in (3, 4, 5):
        jb.push(seq, seq, 0.0)
    assert jb.pop(0.0) == []
    jb.push(6, 6, 0.0)
    assert jb.pop(0.0) == [3, 4, 5, 6] and jb.lost == 2


def test_jitter_buffer_sequence_wrap_and_restart():
    jb: JitterBuffer[int] = JitterBuffer()
    out = []
    for seq in (65534, 0, 65535, 1):
        jb.push(seq, seq, 0.0)
        out += jb.pop(0.0)
    assert out == [65534, 65535, 0, 1]
    assert not jb.push(30000, 30000, 0.0)  # one stray far away: ignored...
    jb.push(2, 2, 0.0)
    assert jb.pop(0.0) == [2]
    assert not jb.push(40000, 40000, 0.0)
    assert jb.push(40001, 40001, 0.0)  # ...but a new numbering that goes on is followed
    assert jb.pop(0.0) == [40000, 40001] and jb.lost == 0


def test_reception_stats_loss_and_jitter():
    stats = ReceptionStats(seq=65530)
    for i, seq in enumerate([65530, 65531, 65533, 65534, 65535, 0, 1, 3]):
        stats.update_seq(seq)
        stats.update_jitter((seq * 160) & 0xFFFFFFFF, i * 0.02)  # (not used for loss)
    block = stats.report_block(ssrc=7, lsr=0x1234, dlsr=65536)
    assert block.highest_sequence == 65536 + 3 and block.packets_lost == 2
    assert block.fraction_lost == (2 << 8) // 10 and (block.ssrc, block.lsr, block.dlsr) == (7, 0x1234, 65536)
    steady = ReceptionStats(seq=0)
    for i in range(50):
        steady.update_seq(i)
        steady.update_jitter(1000 + 160 * i, 5.0 + 0.02 * i)
    assert steady.jitter == pytest.approx(0, abs=1e-6)
    steady.update_jitter(1000 + 160 * 50, 5.0 + 0.02 * 50 + 0.016)  # 16 ms late: |D| = 128
    assert steady.jitter == pytest.approx(128 / 16)
    assert steady.report_block(1, 0, 0).fraction_lost == 0


def test_timestamp_mapper_anchors_and_rebases():
    mapper = TimestampMapper()
    assert mapper.map(4294967000, 10.0) == 10.0
    assert mapper.map((4294967000 + 1600) & 0xFFFFFFFF, 10.25) == pytest.approx(10.2)  # across the wrap
    assert mapper.map(4294967000 + 8000 * 5, 11.0, check=False) == pytest.approx(15.0)
    assert mapper.map(123, 12.0) == 12.0  # a jump: re-based on arrival
    assert mapper.map(123 + 160, 12.03) == pytest.approx(12.02)


def test_sender_numbering_marker_and_key_press():
    sender = RtpSender()
    sender.configure(PCMU, EVENT)
    tone = np.full(160, 0.25, np.float32)
    sender.queue(tone, 0.04)
    sender.queue(tone, 0.06)
    packets = [sender.packet(slot, slot * 0.02, True) for slot in range(5)]
    assert [p.marker for p in packets] == [1, 0, 1, 0, 0]  # first packet; speech after silence
    assert [p.payload == b"\xff" * 160 for p in packets] == [True, True, False, False, True]
    assert [(p.sequence_number - packets[0].sequence_number) & 0xFFFF for p in packets] == [0, 1, 2, 3, 4]
    assert [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets] == [0, 160, 320, 480, 640]
    skipped = sender.packet(7, 0.14, True)  # two slots skipped: time moves on, numbering does not
    assert (skipped.sequence_number - packets[-1].sequence_number) & 0xFFFF == 1
    assert (skipped.timestamp - packets[-1].timestamp) & 0xFFFFFFFF == 480

    sender.queue_press(dtmf_packets("3", 100))
    press = [sender.packet(slot, slot * 0.02, True) for slot in range(8, 17)]
    sent = [p for p in press[:8] if p is not None]
    assert [press.index(p) for p in sent] == [3, 5, 6, 7]  # offsets 400 and 800 snapped to slots
    assert {p.timestamp for p in sent} == {sender.timestamp(8)} and [p.payload_type for p in sent] == [101] * 4
    assert press[8] is not None and press[8].payload_type == 0 and press[8].marker == 0  # silence after it
    assert sender.packet_count == 6 + 4 + 1


def test_sender_queue_clear_and_not_sending():
    sender = RtpSender()
    sender.configure(PCMA, None)
    for i in range(10):
        sender.queue(np.zeros(160, np.float32), 1.0 + 0.02 * i)
    assert sender.queued_s() == pytest.approx(0.2)
    assert sender.packet(0, 1.0, sending=False) is None and sender.queued_s() == pytest.approx(0.18)  # played into the void
    sender.clear()
    assert sender.queued_s() == 0
    assert not sender.can_send_dtmf
    with pytest.raises(ValueError):
        sender.queue(np.zeros(80, np.float32), 0.0)


# -- RtpStream over loopback -------------------------------------------------------------------

class Peer(asyncio.DatagramProtocol):
    """A raw UDP socket playing the remote phone: records what arrives, sends crafted packets."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, float]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append((data, time.monotonic()))

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, ("127.0.0.1", port))


_PEERS: list[Peer] = []


async def peer() -> Peer:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    _PEERS.append(protocol)
    return protocol


def media_to(port: int, local: str = "sendrecv", remote: str = "sendrecv", codec: AudioCodec = PCMU,
             rtcp_port: int | None = None) -> NegotiatedMedia:
    return NegotiatedMedia("127.0.0.1", port, codec, EVENT, local, remote, 20, rtcp_port)


def rtp(seq: int, ts: int, payload: bytes = b"\xff" * 160, pt: int = 0, ssrc: int = 0x1234, marker: int = 0) -> bytes:
    return RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload).serialize()


async def drain(stream: RtpStream, quiet_s: float = 0.3) -> list:
    """What the stream hands over until it has been quiet for `quiet_s` (a raw peer stops)."""
    items = []
    while True:
        try:
            items.append(await asyncio.wait_for(stream.receive(), quiet_s))
        except TimeoutError:
            return items


async def collect(stream: RtpStream, seconds: float) -> list:
    """What the stream hands over in `seconds` (a stream peer never stops: it sends silence)."""
    items = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            items.append(await asyncio.wait_for(stream.receive(), left))
        except TimeoutError:
            break
    return items


def test_two_streams_exchange_a_tone():
    async def main():
        a, b = await RtpStream.open("127.0.0.1"), await RtpStream.open("127.0.0.1")
        alice, bob = SdpSession("127.0.0.1", a.local_port), SdpSession("127.0.0.1", b.local_port)
        answer, b_media = bob.answer(alice.offer())
        a.start(alice.accept_answer(answer))
        b.start(b_media)
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
        t0 = a.clock() + 0.1
        for i in range(50):
            a.send(tone[i * 160:(i + 1) * 160], t0 + i * 0.02)
        assert a.queued_s() == pytest.approx(1.0)
        items = await collect(b, 1.5)
        await a.close()
        await b.close()
        return items, a.stats, b.stats
    items, sent, got = run(main())
    frames = [f for f in items if isinstance(f, AudioFrame)]
    assert all(f.sample_rate == 8000 and len(f.samples) == 160 for f in frames)
    starts = np.array([f.start_s for f in frames])
    assert np.allclose(np.diff(starts), 0.02)  # placed by RTP timestamp: no gaps, in order
    heard = np.concatenate([f.samples for f in frames])
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    first = next(i for i, f in enumerate(frames) if np.abs(f.samples).max() > 0.05)  # frames stay aligned
    segment = heard[first * 160:first * 160 + 8000]
    assert len(segment) == 8000 and np.corrcoef(segment, tone)[0, 1] > 0.99
    assert got.lost == 0 and got.late == 0 and got.bad_packets == 0 and got.wrong_source == 0
    assert sent.packets_out - 2 <= got.packets_in <= sent.packets_out and got.packets_in >= 60 and got.bytes_in == 160 * got.packets_in
    assert got.jitter_ms < 20


def test_packets_go_out_every_20_ms_with_continuous_numbering():
    async def main():
        remote = await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.start(media_to(remote.port))
        t0 = stream.clock() + 0.3
        for i in range(10):
            stream.send(np.full(160, 0.3, np.float32), t0 + 0.02 * i)
        await asyncio.sleep(1.0)
        await stream.close()
        return remote.received, stream.stats
    received, stats = run(main())
    packets = [(RtpPacket.parse(d), t) for d, t in received if d[1] < 192 or d[1] > 208]
    assert stats.packets_out - 1 <= len(packets) <= stats.packets_out and 40 <= len(packets) <= 52
    seqs = [p.sequence_number for p, _ in packets]
    stamps = [p.timestamp for p, _ in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    # a slot skipped under load moves the timestamp on with real time; in steady state it is +160
    steps = [(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:])]
    assert all(s % 160 == 0 and s > 0 for s in steps) and np.median(steps) == 160
    arrivals = np.array([t for _, t in packets])
    slots = np.array([((s - stamps[0]) & 0xFFFFFFFF) / 8000 for s in stamps])
    error = arrivals - arrivals[0] - slots  # a fixed schedule: the error does not grow
    assert np.median(np.abs(error)) < 0.005 and abs(np.mean(error[-10:]) - np.mean(error[:10])) < 0.005
    assert np.median(np.diff(arrivals)) == pytest.approx(0.02, abs=0.003)
    speech = [p for p, _ in packets if p.payload != b"\xff" * 160]
    assert len(speech) == 10 and speech[0].marker == 1 and not any(p.marker for p in speech[1:])
    assert packets[0][0].marker == 1 and sum(p.marker for p, _ in packets) == 2


def test_reordered_and_duplicated_packets_come_out_in_order():
    async def main():
        remote = await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.start(media_to(remote.port, local="recvonly"))
        order = [0, 1, 3, 2, 2, 4, 6, 5, 7, 7, 1, 8]
        for seq in order:
            remote.send(rtp(100 + seq, 5000 + 160 * seq, bytes([seq]) * 160), stream.local_port)
            await asyncio.sleep(0.005)
        items = await drain(stream, 0.2)
        await stream.close()
        return items, stream.stats
    items, stats = run(main())
    assert [g711.ulaw_encode(f.samples)[0] for f in items] == list(range(9))
    assert np.allclose(np.diff([f.start_s for f in items]), 0.02)
    assert (stats.packets_in, stats.duplicates, stats.lost, stats.late) == (12, 3, 0, 0)


def test_missing_packet_is_given_up_and_late_one_dropped():
    async def main():
        remote = await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.start(media_to(remote.port, local="recvonly"))
        for seq in (0, 1, 3, 4):
            remote.send(rtp(seq, 160 * seq), stream.local_port)
        items = await drain(stream, 0.2)  # the buffer gives 2 up after 60 ms
        remote.send(rtp(2, 320), stream.local_port)
        items += await drain(stream, 0.1)
        await stream.close()
        return items, stream.stats
    items, stats = run(main())
    starts = [f.start_s - items[0].start_s for f in items]
    assert starts == pytest.approx([0, 0.02, 0.06, 0.08])  # the consumer sees the hole by start_s
    assert (stats.lost, stats.late) == (1, 1)


def test_garbage_and_wrong_sources_are_counted_and_dropped():
    async def main():
        remote, stranger = await peer(), await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.start(media_to(remote.port, local="recvonly"))
        remote.send(rtp(0, 0), stream.local_port)
        for junk in (b"\x00" * 3, b"hello world, not rtp", b"\x40" + b"\x00" * 20,  # version 1
                     rtp(1, 160, pt=18),  # G.729: not negotiated
                     rtp(1, 160, payload=b""),  # no audio in it
                     rtp(1, 160, pt=101, payload=b"\x05"),  # a truncated key press
                     b"\x80\xc8\x00\x06" + b"\x00" * 8):  # RTCP-muxed SR, truncated
            remote.send(junk, stream.local_port)
        stranger.send(rtp(1, 160, ssrc=0x666), stream.local_port)  # right host, wrong port
        remote.send(rtp(1, 160), stream.local_port)
        items = await drain(stream, 0.2)
        await stream.close()
        return items, stream.stats
    items, stats = run(main())
    assert len(items) == 2 and (items[1].start_s - items[0].start_s) == pytest.approx(0.02)
    assert stats.bad_packets == 7 and stats.wrong_source == 1 and stats.packets_in == 2


def test_latching_follows_the_first_packet_from_the_right_host():
    async def main():
        nat = await peer()
        stream = await RtpStream.open("127.0.0.1", latch=True)
        stream.start(media_to(9, local="sendrecv"))  # what the SDP said (a private address's port)
        nat.send(rtp(0, 0), stream.local_port)
        await asyncio.sleep(0.15)
        other = await peer()
        other.send(rtp(1, 160), stream.local_port)  # after latching, another port is refused
        await asyncio.sleep(0.05)
        await stream.close()
        return nat.received, stream.stats
    received, stats = run(main())
    assert sum(1 for d, _ in received if not 192 <= d[1] <= 208 and RtpPacket.parse(d).payload_type == 0) >= 3
    assert stats.packets_in == 1 and stats.wrong_source == 1


def test_new_ssrc_and_timestamp_jump_are_followed():
    async def main():
        remote = await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.start(media_to(remote.port, local="recvonly"))
        for i in range(3):
            remote.send(rtp(10 + i, 1000 + 160 * i, ssrc=1), stream.local_port)
        await asyncio.sleep(1.1)  # (a new source is taken once the established one has been silent 1 s)
        for i in range(3):  # the PBX switched media: new SSRC, numbering and timestamps
            remote.send(rtp(50000 + i, 9_000_000 + 160 * i, ssrc=2), stream.local_port)
        items = await drain(stream, 0.2)
        await stream.close()
        return items, stream.stats
    items, stats = run(main())
    assert len(items) == 6 and stats.lost == 0
    starts = [f.start_s for f in items]
    assert np.allclose(np.diff(starts[:3]), 0.02) and np.allclose(np.diff(starts[3:]), 0.02)
    assert 0.9 < starts[3] - starts[2] < 1.5  # re-based on arrival, not 1000 s away


def test_rtp_timeout_returns_none_but_not_on_hold():
    async def main():
        remote = await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.timeout_s = 0.3
        stream.start(media_to(remote.port, remote="sendonly"))  # they hold us: silence is fine
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.receive(), 0.5)
        stream.start(media_to(remote.port))  # re-INVITE: back to sendrecv
        remote.send(rtp(0, 0), stream.local_port)
        began = time.monotonic()
        first = await stream.receive()
        second = await stream.receive()
        waited = time.monotonic() - began
        await stream.close()
        return first, second, waited, stream.timed_out
    first, second, waited, timed_out = run(main())
    assert isinstance(first, AudioFrame) and second is None and timed_out
    assert 0.25 < waited < 1.0


def test_rtcp_sender_reports_and_bye():
    async def main():
        remote, remote_rtcp = await peer(), await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.rtcp_interval_s = 0.2
        stream.start(media_to(remote.port, rtcp_port=remote_rtcp.port))
        for i in range(5):
            remote.send(rtp(i, 160 * i, ssrc=0xABCD), stream.local_port)
        ntp = 0xE9A1B2C3_D4E5F607
        sr = RtcpSrPacket(ssrc=0xABCD, sender_info=RtcpSenderInfo(ntp, 800, 5, 800))
        remote_rtcp.send(bytes(sr), stream.local_port + 1)
        remote_rtcp.send(b"\x80\xc8\x00\x09garbage", stream.local_port + 1)
        await asyncio.sleep(0.5)
        await stream.close()
        return remote_rtcp.received, stream.stats, ntp
    received, stats, ntp = run(main())
    compounds = [RtcpPacket.parse(d) for d, _ in received]
    assert len(compounds) >= 3 and stats.rtcp_out == len(compounds)
    reports = [c[0] for c in compounds[:-1]]
    assert all(isinstance(r, RtcpSrPacket) for r in reports)
    last = reports[-1]
    assert last.sender_info.packet_count >= 10 and last.sender_info.octet_count == 160 * last.sender_info.packet_count
    assert abs(last.sender_info.ntp_timestamp / 2**32 - (time.time() + 2208988800)) < 5
    assert last.reports[0].ssrc == 0xABCD and last.reports[0].highest_sequence == 4
    assert last.reports[0].lsr == (ntp >> 16) & 0xFFFFFFFF and last.reports[0].dlsr > 0
    assert all(isinstance(c[1], RtcpSdesPacket) and c[1].chunks[0].ssrc == last.ssrc for c in compounds)
    bye = compounds[-1]
    assert isinstance(bye[-1], RtcpByePacket) and bye[-1].sources == [last.ssrc]
    assert stats.rtcp_in == 1 and stats.bad_packets == 1


def test_receiver_report_when_not_sending():
    async def main():
        remote_rtcp = await peer()
        stream = await RtpStream.open("127.0.0.1")
        stream.rtcp_interval_s = 0.1
        stream.start(media_to(40000, local="recvonly", rtcp_port=remote_rtcp.port))
        await asyncio.sleep(0.35)
        await stream.close()
        return remote_rtcp.received, stream.stats
    received, stats = run(main())
    assert stats.packets_out == 0
    assert all(isinstance(RtcpPacket.parse(d)[0], RtcpRrPacket) for d, _ in received) and len(received) >= 3


def test_key_presses_end_to_end():
    async def main():
        a, b = await RtpStream.open("127.0.0.1"), await RtpStream.open("127.0.0.1")
        a.start(media_to(b.local_port))
        b.start(media_to(a.local_port))
        a.send_dtmf("7")
        a.send_dtmf("#", duration_ms=60)
        a.send_dtmf("7")
        items = await collect(b, 0.6)
        await a.close()
        await b.close()
        return items
    items = run(main())
    presses = [i for i in items if isinstance(i, DtmfDigitEvent)]
    assert [p.digit for p in presses] == ["7", "#", "7"]
    assert 0.1 < presses[1].at_s - presses[0].at_s < 0.3
    with pytest.raises(ValueError):
        run(_bad_digit())


async def _bad_digit():
    stream = await RtpStream.open("127.0.0.1")
    try:
        stream.send_dtmf("x")
    finally:
        await stream.close()


def test_recvonly_sends_nothing_and_close_frees_the_ports():
    async def main():
        remote = await peer()
        stream = await RtpStream.open("127.0.0.1", port_range=(31000, 31999))
        port = stream.local_port
        assert port % 2 == 0 and 31000 <= port < 31999
        stream.start(media_to(remote.port, local="recvonly"))
        stream.send(np.zeros(160, np.float32), stream.clock())
        await asyncio.sleep(0.1)
        await asyncio.gather(stream.close(), stream.close())  # both return with the ports free
        await stream.close()
        assert await stream.receive() is None
        again = await RtpStream.open("127.0.0.1", port_range=(port, port + 1))
        assert again.local_port == port
        with pytest.raises(OSError):
            await RtpStream.open("127.0.0.1", port_range=(port, port + 1))  # taken
        await again.close()
        return remote.received
    received = run(main())
    assert [d for d, _ in received if not 192 <= d[1] <= 208] == []


def test_receive_returns_none_when_closed_while_waiting():
    async def main():
        stream = await RtpStream.open("127.0.0.1")
        stream.start(media_to(40000, remote="inactive"))
        waiter = asyncio.ensure_future(stream.receive())
        await asyncio.sleep(0.05)
        await stream.close()
        return await waiter
    assert run(main()) is None


def test_clock_can_be_replaced_by_the_calls_own():
    async def main():
        a, b = await RtpStream.open("127.0.0.1"), await RtpStream.open("127.0.0.1")
        a.start(media_to(b.local_port))
        b.start(media_to(a.local_port))
        started = time.monotonic()
        call_clock = lambda: time.monotonic() - started
        a.clock = call_clock
        b.clock = call_clock
        a.send(np.full(160, 0.3, np.float32), 0.1)
        items = await collect(b, 0.4)
        await a.close()
        await b.close()
        return items
    items = run(main())
    loud = [f for f in items if np.abs(f.samples).max() > 0.1]
    assert len(loud) == 1 and 0.08 < loud[0].start_s < 0.2  # on the call's timeline


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_and_a_dual_stack_socket_talking_to_ipv4():
    async def pair(host_a: str, sdp_a: str, host_b: str, sdp_b: str) -> tuple:
        a, b = await RtpStream.open(host_a), await RtpStream.open(host_b)
        alice, bob = SdpSession(sdp_a, a.local_port), SdpSession(sdp_b, b.local_port)
        answer, b_media = bob.answer(alice.offer())
        a.start(alice.accept_answer(answer))
        b.start(b_media)
        await asyncio.sleep(0.2)
        await a.close()
        await b.close()
        return a.stats, b.stats

    for stats in (run(pair("::1", "::1", "::1", "::1")), run(pair("::", "127.0.0.1", "127.0.0.1", "127.0.0.1"))):
        assert all(s.packets_in >= 5 and s.wrong_source == 0 for s in stats)
