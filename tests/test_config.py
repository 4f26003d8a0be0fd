import subprocess

import pytest

from voiceagent.config import Config
from voiceagent.errors import ConfigError

from .conftest import ROOT, SAMPLES, VOICEAGENT


def test_example_config_is_the_defaults():
    example = Config.load(ROOT / "voiceagent.example.toml")
    assert example == Config()


def test_unknown_keys_and_sections_are_rejected(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[asr]\nmodle = 'x'\n")
    with pytest.raises(ConfigError, match="unknown key asr.modle"):
        Config.load(bad)
    bad.write_text("[nope]\n")
    with pytest.raises(ConfigError, match="unknown section"):
        Config.load(bad)
    bad.write_text("not toml [")
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(bad)


def test_cli_reports_config_errors_in_one_line(tmp_path):
    out = subprocess.run([VOICEAGENT, "transcribe", str(SAMPLES / "en_human_16k.wav"), "--config",
                          str(tmp_path / "missing.toml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip() == f"voiceagent: config file not found: {tmp_path / 'missing.toml'}"


def test_configured_webrtc_vad_and_tiny_english_model(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[vad]\nbackend = "webrtc"\n[asr]\nmodel = "whisper-tiny-en"\nlanguages = ["en"]\n')
    out = subprocess.run([VOICEAGENT, "transcribe", str(SAMPLES / "en_human_16k.wav"), "--lang", "en", "--config",
                          str(cfg)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "real person" in out.stdout.lower()


def test_models_load_by_path_as_well_as_by_manifest_id(tmp_path):
    """An operator's own files: a CTranslate2 Whisper directory, a .gguf file, a piper .onnx voice."""
    from voiceagent.config import AsrConfig, LlmConfig, TtsConfig
    from voiceagent.asr import create_asr
    from voiceagent.llm import create_llm
    from voiceagent.provision import load_manifest
    from voiceagent.tts import create_tts

    manifest = load_manifest()
    asr = create_asr(AsrConfig(model=str(manifest["whisper-tiny-en"].directory), languages=["en"]))
    assert asr.name.endswith("whisper-tiny-en")
    gguf = next(manifest["smollm2-135m"].directory.glob("*.gguf"))
    llm = create_llm(LlmConfig(model=str(gguf), max_tokens=4))
    assert "".join(llm.stream([{"role": "user", "content": "Hi"}]))
    onnx = next(manifest["piper-en-joe"].directory.glob("*.onnx"))
    voice = create_tts(TtsConfig(en_voice=str(onnx))).voice("en")
    assert next(iter(voice.synthesize("Hello."))).samples.size > 1000


def test_hub_name_without_network_fails_with_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[asr]\nmodel = "large-v3"\n')
    out = subprocess.run([VOICEAGENT, "transcribe", str(SAMPLES / "en_human_16k.wav"), "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "cannot load ASR model 'large-v3'" in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
