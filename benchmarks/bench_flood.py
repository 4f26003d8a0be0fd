"""Live calls while the public routes are flooded: `voiceagent serve` (SIP + HTTP, the offline
defaults) answers real baresip phone calls one after another, first alone, then while 8 clients
post long chat messages (1 000 characters, each different: no cached answer) as fast as they are
answered. The rate limit per address is lifted for the test (a flood from many addresses), so
what holds the calls' latency is the chat pool: one worker, at a lower OS priority, 8 waiting.

Voice to voice per agent reply is the engine's own figure from the stored record.

    .venv/bin/python benchmarks/bench_flood.py [--calls 4]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser_call import AgentServer  # noqa: E402
from tests.peers.baresip import Baresip  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402

SAMPLE = ROOT / "samples" / "audio" / "en_multi_turn_8k.wav"
WORDS = "order parcel refund size colour return delivery address coupon shoes dress blender when why how".split()


def flood(base: str, stop: threading.Event, counts: dict, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        text = " ".join(rng.choice(WORDS) for _ in range(160))[:1000]
        body = json.dumps({"session_id": f"flood-{seed}-{rng.random()}", "text": text}).encode()
        req = urllib.request.Request(base + "/api/chat", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                counts[r.status] = counts.get(r.status, 0) + 1
        except urllib.error.HTTPError as e:
            counts[e.code] = counts.get(e.code, 0) + 1
            if e.code in (429, 503):
                time.sleep(0.05)
        except OSError:
            counts["error"] = counts.get("error", 0) + 1


def one_call(server: AgentServer, work: Path, n: int) -> list[float]:
    from voiceagent.audio import load_audio
    import soundfile as sf

    audio = load_audio(SAMPLE, 8000).samples
    wav = work / f"caller-{n}.wav"
    sf.write(str(wav), np.concatenate([np.zeros(4000, np.float32), audio, np.zeros(8000 * 6, np.float32)]), 8000,
             subtype="PCM_16")
    before = {c["call_id"] for c in _calls(server)}
    with Baresip(f"c{n}", audio_source=wav) as phone:
        phone.dial(f"sip:agent@127.0.0.1:{server.sip_port}")
        phone.wait_for("CALL_ESTABLISHED", 15)
        phone.wait_for("CALL_CLOSED", 90)
    deadline = time.time() + 30
    while time.time() < deadline:
        new = [c["call_id"] for c in _calls(server) if c["call_id"] not in before]
        if new:
            record = server.wait_call(new[0], 30) or {}
            return [t["latency_ms"]["voice_to_voice"] for t in record.get("turns", [])
                    if t["role"] == "agent" and (t.get("latency_ms") or {}).get("voice_to_voice") is not None]
        time.sleep(0.5)
    return []


def _calls(server: AgentServer) -> list[dict]:
    status, doc = server.get_json("/api/ops/calls?limit=50")
    return doc.get("calls", []) if status == 200 else []


def summary(values: list[float]) -> str:
    if not values:
        return "no turns"
    return (f"p50 {statistics.median(values):.0f} ms, p95 {np.percentile(values, 95):.0f} ms, "
            f"max {max(values):.0f} ms (n={len(values)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--flooders", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_flood-"))
    sip_port = free_port("sip")
    config = ("[call]\ngreeting = false\nask_rating = false\n[security]\nchat_rate_per_s = 1000.0\nchat_burst = 1000\n"
              "[sip]\nrtp_port_min = 35000\nrtp_port_max = 35999\n")
    server = AgentServer(work / "server", config_text=config)
    server.sip_port = sip_port
    server.start(sip=f"127.0.0.1:{sip_port}")
    try:
        server.wait_ready()
        server.wait_log(("pre-synthesised",), 90)
        quiet = [v for n in range(args.calls) for v in one_call(server, work, n)]
        print(f"calls alone:        voice to voice {summary(quiet)}")
        stop, counts = threading.Event(), {}
        threads = [threading.Thread(target=flood, args=(server.base, stop, counts, s), daemon=True)
                   for s in range(args.flooders)]
        for t in threads:
            t.start()
        time.sleep(3)
        started = time.time()
        flooded = [v for n in range(args.calls) for v in one_call(server, work, 100 + n)]
        seconds = time.time() - started
        stop.set()
        for t in threads:
            t.join(35)
        print(f"calls under flood:  voice to voice {summary(flooded)}")
        answered = counts.get(200, 0)
        print(f"the flood: {sum(v for k, v in counts.items() if k != 'error')} chat requests in {seconds:.0f} s "
              f"({answered / seconds:.1f} answered/s), by status {dict(sorted(counts.items(), key=str))}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
