"""The SIP test harness (tests/peers/) proven against itself: real baresip phones, a real Kamailio
registrar/proxy and SIPp, all on 127.0.0.1, without the product's SIP stack.

The binaries come from scripts/setup.sh (baresip-core, kamailio, sip-tester). Outside CI a missing
binary skips its tests with the reason; under CI (CI set) nothing is skipped: a missing binary fails.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from tests.peers import baresip as baresip_mod
from tests.peers import need
from tests.peers import kamailio as kamailio_mod
from tests.peers import sipp as sipp_mod
from tests.peers.baresip import Baresip, convert_wav, read_wav
from tests.peers.kamailio import Kamailio
from tests.peers.sipp import SippUas, run_options, run_uac

from .conftest import SAMPLES

SPEECH = SAMPLES / "en_order_status_16k.wav"


needs_baresip = need(baresip_mod.available(), "baresip (Debian baresip-core)")
needs_kamailio = need(kamailio_mod.available(), "kamailio (Debian kamailio)")
needs_sipp = need(sipp_mod.available(), "sipp (Debian sip-tester)")


def _aligned_correlation(ref: np.ndarray, got: np.ndarray, max_lag: int = 8000) -> tuple[float, int]:
    """Peak normalised correlation of ``got`` against ``ref`` over lags 0..max_lag (``got`` may
    start later in the reference than its first sample: jitter buffer, first packets)."""
    n = len(got)
    ref = ref[: n + max_lag]
    size = 1 << int(np.ceil(np.log2(len(ref) + n)))
    xc = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(got, size)), size)
    lag = int(np.argmax(np.abs(xc[: max_lag + 1])))
    a = ref[lag: lag + n]
    b = got[: len(a)]
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b))) or 1.0
    return float(np.dot(a, b)) / denom, lag


def _envelope(x: np.ndarray, frame: int = 400) -> np.ndarray:
    n = len(x) // frame
    return np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))


@needs_baresip
def test_baresip_direct_call_carries_audio(tmp_path):
    ref_path = convert_wav(SPEECH, tmp_path / "ref8k.wav")
    ref, sr = read_wav(ref_path)
    assert sr == 8000
    with Baresip("alice", audio_source=SPEECH, pad_seconds=5) as a, Baresip("bob") as b:
        a.dial(b.uri)
        est_a = a.wait_for("CALL_ESTABLISHED", 5)
        est_b = b.wait_for("CALL_ESTABLISHED", 5)
        assert est_a["id"] == est_b["id"]
        assert est_b["direction"] == "incoming" and est_b["peeruri"] == a.uri
        time.sleep(3.0)
        a.hangup()
        assert a.wait_for("CALL_CLOSED", 5)["id"] == est_a["id"]
        assert b.wait_for("CALL_CLOSED", 5)["param"] == "Connection reset by peer"

        rec = b.recordings()
        assert rec["heard"] and rec["sent"], b.all_recordings()
        heard = b.heard_audio()
        assert 2.0 * 8000 < len(heard) < 4.5 * 8000, (len(heard), b.log_tail())
        corr, lag = _aligned_correlation(ref, heard)
        assert corr > 0.9, f"bob's recording does not match alice's speech (corr {corr:.3f}, lag {lag})"
        n = len(heard) - len(heard) % 400
        env_ref, env_got = _envelope(ref[lag: lag + n]), _envelope(heard[:n])
        assert np.corrcoef(env_ref, env_got)[0, 1] > 0.9
        # bob sent silence: that is what alice heard, and alice's own recording is her speech
        assert np.abs(b.sent_audio()).max() < 1e-3
        assert np.abs(a.heard_audio()).max() < 1e-2
        assert _aligned_correlation(ref, a.sent_audio())[0] > 0.9


@needs_baresip
@needs_kamailio
@needs_sipp
def test_register_with_digest_auth_and_call_through_proxy():
    users = {"alice": "alice-pw", "bob": "bob-secret"}
    with Kamailio(users=users, realm="voiceagent.test", auth_invite=True) as k:
        with Baresip("alice", registrar=k.uri, password="alice-pw") as a, \
                Baresip("bob", registrar=k.uri, password="bob-secret") as b, \
                Baresip("bob", registrar=k.uri, password="not-bobs") as intruder:
            assert a.wait_registered(5)["param"] == "200 OK"
            b.wait_registered(5)
            fail = intruder.wait_for(("REGISTER_OK", "REGISTER_FAIL"), 5)
            assert fail["type"] == "REGISTER_FAIL" and "403" in fail["param"], fail

            a.dial(k.aor("bob"))  # INVITE is challenged (407) and re-sent with credentials
            est_a = a.wait_for("CALL_ESTABLISHED", 5)
            est_b = b.wait_for("CALL_ESTABLISHED", 5)
            assert est_a["id"] == est_b["id"]

            invites = [m for m in b.sip_messages() if m["method"] == "INVITE" and m["direction"] == "in"]
            assert invites, b.log_tail()
            rr = [v for name, v in invites[0]["headers"] if name.lower() == "record-route"]
            assert rr and f"sip:{k.hostport};lr" in rr[0], invites[0]["text"]
            assert invites[0]["src"] == k.hostport  # it came through the proxy, not from alice

            a.hangup()
            a.wait_for("CALL_CLOSED", 5)
            b.wait_for("CALL_CLOSED", 5)

            # in-dialog requests were loose-routed through the proxy
            reqs = k.requests()
            byes = [r for r in reqs if r["method"] == "BYE"]
            assert byes and k.hostport in byes[0]["route"], k.log_tail()
            assert any(r["method"] == "INVITE" and r["ruri"] == k.aor("bob") for r in reqs)
            assert any(r["status"] == 407 for r in _challenges(a)), "INVITE was not challenged"

            # a user that is not registered: 404 from the proxy
            a.dial(k.aor("nobody"))
            assert a.wait_for("CALL_CLOSED", 5)["param"].startswith("404")

            # the OPTIONS scenario of sipp, relayed to a registered phone that answers it
            res = run_options(k.hostport, service="bob", count=2)
            assert res.ok and res.responses[200] == 2, res.summary()


def _challenges(phone: Baresip) -> list[dict]:
    return [m for m in phone.sip_messages() if m["direction"] == "in" and m["status"] in (401, 407)]


@needs_baresip
def test_baresip_manual_answer_and_end_of_file(tmp_path):
    tone = tmp_path / "tone.wav"
    import soundfile as sf

    sf.write(tone, (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32), 8000)
    with Baresip("alice", audio_source=tone) as a, Baresip("bob", auto_answer=False) as b:
        a.dial(b.uri)
        incoming = b.wait_for("CALL_INCOMING", 5)
        assert incoming["peeruri"] == a.uri
        time.sleep(0.2)
        assert not a.events_of("CALL_ESTABLISHED")  # rings until accepted
        b.accept()
        a.wait_for("CALL_ESTABLISHED", 5)
        b.wait_for("CALL_ESTABLISHED", 5)
        # without pad_seconds the call ends with alice's one-second file
        assert a.wait_for("CALL_CLOSED", 5)["param"] == "end of file"
        b.wait_for("CALL_CLOSED", 5)


@needs_baresip
def test_baresip_blind_transfer():
    with Baresip("alice") as a, Baresip("bob") as b, Baresip("carol") as c:
        a.dial(b.uri)
        first = a.wait_for("CALL_ESTABLISHED", 5)["id"]
        b.wait_for("CALL_ESTABLISHED", 5)

        b.transfer(c.uri)  # REFER to alice, Refer-To: carol
        assert a.wait_for("TRANSFER", 5)["param"] == c.uri
        second = a.wait_for("CALL_ESTABLISHED", 5, peeruri=c.uri)
        assert second["id"] != first
        assert c.wait_for("CALL_ESTABLISHED", 5)["peeruri"] == a.uri
        assert a.wait_for("CALL_CLOSED", 5, id=first)  # the transferor hung up the first call
        assert b.wait_for("CALL_CLOSED", 5)["param"] == "Call transfered"
        sent = [m["first_line"].split()[0] for m in b.sip_messages() if m["direction"] == "out"]
        assert "REFER" in sent, sent
        assert "ESTABLISHED" in a.listcalls()

        a.hangup()
        assert c.wait_for("CALL_CLOSED", 5)["param"] == "Connection reset by peer"


@needs_sipp
def test_sipp_uac_to_sipp_uas_ten_calls():
    with SippUas() as uas:
        res = run_uac(uas.target, calls=10, rate=20, limit=5, hold_ms=200)
    assert res.ok, res.summary()
    assert (res.successful, res.failed) == (10, 0), res.summary()
    assert res.responses[200] == 20 and not res.unexpected, res.summary()  # 200 to INVITE and BYE
    assert uas.result.successful == 10, uas.result.summary()


@needs_sipp
def test_sipp_cancel_scenario():
    with SippUas(scenario="uas_ring_cancel") as uas:
        res = run_uac(uas.target, scenario="uac_cancel", calls=3, rate=10, hold_ms=200)
    assert res.ok and res.successful == 3, res.summary()
    assert res.responses[487] == 3 and res.responses[180] == 3, res.summary()
    assert uas.result.successful == 3, uas.result.summary()


@needs_sipp
def test_sipp_reports_failures():
    # nobody listens on the target: every call times out and is counted as failed
    from tests.peers.ports import free_port

    res = run_uac(f"127.0.0.1:{free_port('sip')}", calls=2, rate=10, recv_timeout_ms=300)
    assert res.returncode == 1 and not res.ok
    assert res.failed == 2 and res.successful == 0, res.summary()


def test_peers_binaries_listed_in_setup():
    setup = (SAMPLES.parent.parent / "scripts" / "setup.sh").read_text()
    line = next(ln for ln in setup.splitlines() if ln.startswith("APT_PACKAGES="))
    for pkg in ("baresip-core", "kamailio", "sip-tester"):
        assert pkg in line
    if os.environ.get("CI"):
        for binary in ("baresip", "kamailio", "sipp", "sox"):
            assert shutil.which(binary) or os.path.exists(f"/usr/sbin/{binary}"), binary
