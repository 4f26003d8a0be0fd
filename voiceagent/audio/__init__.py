"""Audio primitives: PCM frames, file input/output and resampling."""

from .frames import AudioFrame, float_to_pcm16, pcm16_to_float, trim_leading_quiet
from .resample import resample
from .wav import Audio, load_audio, probe_audio, write_wav

__all__ = ["Audio", "AudioFrame", "float_to_pcm16", "load_audio", "pcm16_to_float", "probe_audio", "resample",
           "trim_leading_quiet", "write_wav"]
