"""How fast a supervisor's takeover acts, end to end: a real phone (baresip) on a call with
`voiceagent serve`, the console in a real Chromium (its fake microphone a 1 kHz tone), N takeovers
and releases on one call (tests/console_call.py --takeovers N). From the phone's own recording:

- click -> caller hears the supervisor: the first 10 ms of the tone on the phone after the click;
- click -> agent silent: when the agent's voice (sound that is not the tone) stops on the phone,
  for takeovers made while the agent was speaking;
- on the server: takeover request -> the session silent (its log).

    .venv/bin/python benchmarks/bench_takeover.py [--takeovers 10] [--out /tmp/bench_takeover]

Also prints the console's cost while it watched the call (server CPU of the console's streams is
in bench_ops.py).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
HZ = 1000.0
STEP = 0.01


def frames(audio: np.ndarray, rate: int):
    n = int(STEP * rate)
    for i in range(len(audio) // n):
        part = audio[i * n:(i + 1) * n].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(part, 4 * n)) ** 2
        freqs = np.fft.rfftfreq(4 * n, 1 / rate)
        share = spectrum[(freqs > HZ - 60) & (freqs < HZ + 60)].sum() / max(spectrum.sum(), 1e-12)
        yield i * STEP, float(np.sqrt(np.mean(part ** 2))), float(share)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--takeovers", type=int, default=10)
    ap.add_argument("--out", default="/tmp/bench_takeover")
    args = ap.parse_args()
    out = Path(args.out)
    done = subprocess.run([sys.executable, "-m", "tests.console_call", "--out", str(out), "--takeovers",
                           str(args.takeovers)], cwd=ROOT)
    result = json.loads((out / "result.json").read_text())
    if done.returncode != 0:
        print(json.dumps(result.get("errors"), indent=1))
        return 1
    record = result["record"]
    # the phone's recording starts with the first RTP packet, which the agent sends as the call is
    # answered (silence until it speaks): its timeline is the call's, within a packet or two
    offset = 0.0
    audio, rate = sf.read(str(out / "heard.wav"), dtype="float32")
    rows = list(frames(audio, rate))
    hear, silence = [], []
    for held, span in zip(result["takeovers"], record["supervision"]):
        click = held["clicked_s"] - offset
        after = [r for r in rows if click <= r[0] <= click + 3.0]
        onset = next((t for t, rms, share in after if rms > 0.003 and share > 0.5), None)
        if onset is not None:
            hear.append((onset - click) * 1000)
            agent = [t for t, rms, share in rows if click - 0.5 <= t < onset and rms > 0.01 and share < 0.3]
            if agent and agent[0] < click:  # the agent was speaking at the click
                silence.append(max(0.0, agent[-1] + STEP - click) * 1000)
    log = (out / "server.log").read_text(errors="replace")
    server = [float(x) for x in re.findall(r"agent silent after ([0-9.]+) ms", log)]

    def p50(values):
        return f"{np.percentile(values, 50):.0f} ms (n={len(values)}, max {max(values):.0f})" if values else "n/a"

    print(f"takeovers: {len(result['takeovers'])} on one call")
    print(f"click -> caller hears the supervisor: p50 {p50(hear)}")
    print(f"click -> agent silent on the phone (agent speaking at the click): p50 {p50(silence)}")
    print(f"server: takeover request -> session silent: p50 {p50(server)}")
    print(f"console while watching: {result.get('console_cost')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
