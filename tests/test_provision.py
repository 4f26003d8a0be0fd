"""Model manifest, checksums, and the messages a missing or corrupt model gives."""

import os
import shutil
import subprocess

import pytest

from voiceagent import provision
from voiceagent.errors import ModelMissing

from .conftest import VOICEAGENT, cli_env


def test_every_manifest_entry_names_source_checksum_and_licence():
    entries = provision.load_manifest()
    for kind in ("asr", "vad", "tts", "llm", "embedding"):
        assert any(e.kind == kind and e.required for e in entries.values()), kind
    for e in entries.values():
        assert e.licence and e.origin
        assert e.system or (e.packages and e.files)
        for f in e.files:
            assert len(f.sha256) == 64 and f.size > 0 and f.parts


def test_models_check_passes_after_setup():
    out = subprocess.run([VOICEAGENT, "models", "check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "whisper-base" in out.stdout and "missing" not in out.stdout


@pytest.fixture
def models_copy(tmp_path, monkeypatch):
    """A private copy of the VAD model dir, so it can be damaged."""
    src = provision.load_manifest()["silero-vad"].directory
    dst = tmp_path / "models"
    shutil.copytree(src, dst / "silero-vad")
    monkeypatch.setenv("VOICEAGENT_MODELS_DIR", str(dst))
    return dst


def test_corrupt_model_is_detected_and_resolve_says_how_to_fix(models_copy):
    onnx = models_copy / "silero-vad" / "silero_vad_v6.onnx"
    data = bytearray(onnx.read_bytes())
    data[1000] ^= 0xFF
    onnx.write_bytes(bytes(data))
    entry = provision.load_manifest()["silero-vad"]
    assert provision.status(entry).state == "corrupt"
    onnx.write_bytes(bytes(data[:-10]))
    with pytest.raises(ModelMissing, match="voiceagent models fetch"):
        provision.resolve("silero-vad", "vad")


def test_fetch_repairs_a_corrupt_model(models_copy):
    onnx = models_copy / "silero-vad" / "silero_vad_v6.onnx"
    onnx.write_bytes(b"garbage")
    statuses = provision.fetch(["silero-vad"], log=lambda m: None)
    assert [s.state for s in statuses] == ["ok"]


def test_missing_model_fails_with_a_one_line_message(tmp_path):
    env = cli_env(VOICEAGENT_MODELS_DIR=str(tmp_path / "empty"))
    wav = os.path.join(os.path.dirname(__file__), "..", "samples", "audio", "en_human_16k.wav")
    out = subprocess.run([VOICEAGENT, "transcribe", wav], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "voiceagent models fetch" in out.stderr
    assert "Traceback" not in out.stderr
    check = subprocess.run([VOICEAGENT, "models", "check"], capture_output=True, text=True, env=env, timeout=120)
    assert check.returncode == 1 and "missing" in check.stdout


def test_paths_and_hub_names_resolve_without_the_manifest(tmp_path):
    assert provision.resolve(str(tmp_path), "asr") == tmp_path
    assert provision.resolve("large-v3", "asr") is None  # a hub name: the backend decides
    with pytest.raises(ModelMissing, match="is a asr model, not tts"):
        provision.resolve("whisper-base", "tts")
