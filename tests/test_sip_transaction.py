"""SIP transactions and dialogs, sans-IO: timers driven by hand, messages as a peer sends them."""

from __future__ import annotations

import pytest

from telephony.sip.dialog import Dialog, DialogError
from telephony.sip.message import SipRequest, make_response, parse_message
from telephony.sip.transaction import (T1, T2, TIMEOUT, ClientTransaction, Deliver, Send, ServerTransaction, State,
                                       Timeout, server_key)

PEER = ("127.0.0.1", 5070)

INVITE = (
    "INVITE sip:agent@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:agent@127.0.0.1:5060>\r\n"
    "From: \"Alice\" <sip:alice@127.0.0.1:5070>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@127.0.0.1\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@127.0.0.1:5070>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def invite(extra: str = "") -> SipRequest:
    text = INVITE.replace("Content-Length", extra + "Content-Length") if extra else INVITE
    return parse_message(text.encode())


def request(method: str, branch: str = "z9hG4bKnashds8") -> SipRequest:
    text = (INVITE.replace("INVITE sip", f"{method} sip").replace("314159 INVITE", f"314159 {method}")
            .replace("z9hG4bK776asdhds", branch))
    return parse_message(text.encode())


def sends(actions) -> list:
    return [a.message for a in actions if isinstance(a, Send)]


# -- client INVITE (17.1.1) ---------------------------------------------------------------------
def test_client_invite_retransmits_with_doubling_intervals_over_udp():
    txn = ClientTransaction(invite(), PEER, now=0.0)
    assert len(sends(txn.start())) == 1
    times = []
    t = 0.0
    while t < TIMEOUT - 0.06:
        t = round(t + 0.05, 2)
        if sends(txn.tick(t)):
            times.append(t)
    # timer A: T1, then doubling: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert any(isinstance(a, Timeout) for a in txn.tick(TIMEOUT))  # timer B
    assert txn.done


def test_client_invite_over_tcp_does_not_retransmit_but_times_out():
    txn = ClientTransaction(invite(), PEER, now=0.0, reliable=True)
    txn.start()
    assert not sends(txn.tick(10.0))
    assert isinstance(txn.tick(TIMEOUT)[0], Timeout)


def test_provisional_stops_retransmission_and_non_2xx_is_acked_by_the_transaction():
    inv = invite()
    txn = ClientTransaction(inv, PEER, now=0.0)
    txn.start()
    ringing = make_response(inv, 180, to_tag="abc")
    assert [type(a) for a in txn.receive(ringing, 0.1)] == [Deliver]
    assert txn.state is State.PROCEEDING
    assert not sends(txn.tick(5.0))  # no more retransmissions once the peer answered
    busy = make_response(inv, 486, to_tag="abc")
    actions = txn.receive(busy, 6.0)
    ack = sends(actions)[0]
    assert ack.method == "ACK" and ack.uri == inv.uri
    assert ack.top_via.branch == inv.top_via.branch  # same transaction (17.1.1.3)
    assert ack.to_addr.tag == "abc" and ack.cseq == (314159, "ACK")
    assert any(isinstance(a, Deliver) and a.message.status == 486 for a in actions)
    # the 486 again (our ACK was lost): ACK again, nothing delivered twice
    again = txn.receive(busy, 7.0)
    assert [m.method for m in sends(again)] == ["ACK"] and not any(isinstance(a, Deliver) for a in again)
    txn.tick(6.0 + 32.0)  # timer D
    assert txn.done


def test_2xx_ends_the_client_invite_transaction_at_once():
    inv = invite()
    txn = ClientTransaction(inv, PEER, now=0.0)
    txn.start()
    actions = txn.receive(make_response(inv, 200, to_tag="x"), 0.2)
    assert [type(a) for a in actions] == [Deliver] and txn.done  # the dialog ACKs a 2xx itself


# -- client non-INVITE (17.1.2) -----------------------------------------------------------------
def test_client_non_invite_retransmits_capped_at_t2_and_times_out():
    txn = ClientTransaction(request("OPTIONS"), PEER, now=0.0)
    txn.start()
    times, t = [], 0.0
    while t < TIMEOUT - 0.06:
        t = round(t + 0.05, 2)
        if sends(txn.tick(t)):
            times.append(t)
    gaps = [round(b - a, 2) for a, b in zip([0.0, *times], times)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[4:]) == {T2}  # timer E, capped at T2
    assert isinstance(txn.tick(TIMEOUT)[0], Timeout)  # timer F


def test_client_non_invite_final_response_absorbs_retransmissions_for_t4():
    req = request("BYE")
    txn = ClientTransaction(req, PEER, now=0.0)
    txn.start()
    ok = make_response(req, 200)
    assert [type(a) for a in txn.receive(ok, 0.1)] == [Deliver]
    assert txn.receive(ok, 0.2) == []  # a retransmitted 200 is not delivered again
    txn.tick(0.1 + 4.9)
    assert not txn.done
    txn.tick(0.1 + 5.0)  # timer K
    assert txn.done


# -- server INVITE (17.2.1) ---------------------------------------------------------------------
def test_server_invite_resends_error_until_ack_then_absorbs():
    inv = invite()
    txn = ServerTransaction(inv, PEER, now=0.0)
    txn.respond(make_response(inv, 100), 0.0)
    # a retransmitted INVITE gets the last provisional again
    assert [m.status for m in sends(txn.receive(inv, 0.3))] == [100]
    busy = make_response(inv, 486, to_tag="t1")
    assert [m.status for m in sends(txn.respond(busy, 1.0))] == [486]
    assert [m.status for m in sends(txn.tick(1.5))] == [486]  # timer G
    assert [m.status for m in sends(txn.tick(2.5))] == [486]
    ack = parse_message(INVITE.replace("INVITE sip", "ACK sip").replace("314159 INVITE", "314159 ACK").encode())
    assert txn.receive(ack, 2.6) == []
    assert txn.state is State.CONFIRMED
    assert not sends(txn.tick(4.0))
    txn.tick(2.6 + 5.0)  # timer I
    assert txn.done


def test_server_invite_gives_up_without_ack():
    inv = invite()
    txn = ServerTransaction(inv, PEER, now=0.0)
    txn.respond(make_response(inv, 480, to_tag="t"), 0.0)
    assert isinstance(txn.tick(TIMEOUT)[-1], Timeout)  # timer H
    assert txn.done


def test_server_invite_2xx_is_left_to_the_dialog():
    inv = invite()
    txn = ServerTransaction(inv, PEER, now=0.0)
    txn.respond(make_response(inv, 200, to_tag="t"), 0.0)
    assert txn.done


def test_server_non_invite_answers_retransmissions_with_the_same_response():
    req = request("OPTIONS")
    txn = ServerTransaction(req, PEER, now=0.0)
    txn.respond(make_response(req, 200), 0.0)
    assert [m.status for m in sends(txn.receive(req, 1.0))] == [200]
    txn.tick(TIMEOUT)  # timer J
    assert txn.done


def test_server_transactions_match_on_branch_sent_by_and_method_with_ack_matching_invite():
    inv = invite()
    ack = parse_message(INVITE.replace("INVITE sip", "ACK sip").replace("314159 INVITE", "314159 ACK").encode())
    assert server_key(inv) == server_key(ack) == ("z9hG4bK776asdhds", "127.0.0.1:5070", "INVITE")
    assert server_key(request("BYE", "z9hG4bK776asdhds")) != server_key(inv)
    old = parse_message(INVITE.replace("z9hG4bK776asdhds", "776asdhds").encode())  # RFC 2543 peer
    assert server_key(old) is None


# -- dialogs (12) -------------------------------------------------------------------------------
def test_uas_dialog_routes_in_dialog_requests_through_the_record_route_set():
    inv = invite("Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n")
    dialog = Dialog.as_uas(inv, "ourtag", "<sip:agent@127.0.0.1:5060>")
    assert dialog.remote_seq == 314159 and dialog.remote.tag == "1928301774"
    bye = dialog.next_request("BYE", "127.0.0.1", 5060)
    assert bye.uri == "sip:alice@127.0.0.1:5070"  # loose routing: the remote target
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.from_addr.tag == "ourtag" and bye.to_addr.tag == "1928301774"
    assert bye.cseq == (dialog.local_seq, "BYE") and bye.call_id == inv.call_id
    assert dialog.destination() == ("p2.example.com", 5060)


def test_uac_dialog_reverses_record_route_and_strict_router_gets_the_request_uri():
    inv = invite()
    ok = make_response(inv, 200, to_tag="b0b", headers=[("Contact", "<sip:bob@192.0.2.4>"),
                                                          ("Record-Route", "<sip:p2.example.com>"),
                                                          ("Record-Route", "<sip:p1.example.com;lr>")])
    dialog = Dialog.as_uac(inv, ok, "<sip:alice@127.0.0.1:5070>")
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com>"]
    strict = Dialog.as_uac(inv, make_response(inv, 200, to_tag="b0b", headers=[
        ("Contact", "<sip:bob@192.0.2.4>"), ("Record-Route", "<sip:strict.example.com>")]), "<sip:a@h>")
    bye = strict.next_request("BYE", "127.0.0.1", 5070)
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == ["<sip:bob@192.0.2.4>"]


def test_dialog_refuses_an_old_cseq_and_follows_a_target_refresh():
    dialog = Dialog.as_uas(invite(), "t", "<sip:agent@127.0.0.1>")
    old = parse_message(INVITE.replace("INVITE sip", "BYE sip").replace("314159 INVITE", "314158 BYE").encode())
    with pytest.raises(DialogError):
        dialog.check_request(old)
    reinvite = parse_message(INVITE.replace("314159 INVITE", "314160 INVITE")
                             .replace("Contact: <sip:alice@127.0.0.1:5070>", "Contact: <sip:alice@127.0.0.1:5099>")
                             .encode())
    dialog.check_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@127.0.0.1:5099"
    assert dialog.remote_seq == 314160
