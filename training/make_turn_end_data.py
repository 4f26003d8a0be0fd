"""Labelled end-of-turn data: finished and unfinished caller turns in Mandarin and English, with the
voice features of synthesised speech for a subset.

Finished turns: the NLU utterances (training/data/nlu_*.jsonl: questions, statements, requests),
two of them run together, short answers ("对", "no"), numbers read out whole. Unfinished turns: a
whole sentence cut where callers pause mid-sentence (after a conjunction, preposition, article,
"is", "I want"; 的/和/在/想), a filler after a cut ("I want to, um", "我想问一下，嗯"), a number cue with
no number yet, half an order or phone number ("我的订单号是3851", "my order number is 38 51").

Voice: a sentence is synthesised whole (piper en joe; espeak-ng's Mandarin pinyin voice) and the
unfinished version is the same audio CUT at the word boundary, so its prosody is really
mid-sentence. The cut point is placed by the prefix's share of the text and moved to the quietest
10 ms within 120 ms (the gap between words).

Splits are by template: a template is held out (20 %), dev (20 %) or train, so the held-out figure
is on sentences whose templates training never saw.

    nice -n 10 .venv/bin/python -m training.make_turn_end_data [--audio-per-lang 240] [--audio-cache /tmp/turn-end-audio]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
import zlib
from pathlib import Path

import numpy as np

from training.nlu_data import load_rows
from voiceagent.audio import resample
from voiceagent.turn_end import _EN_CLASSES, _ZH_CLASSES, SAMPLE_RATE, audio_features

OUT = Path(__file__).resolve().parent / "data" / "turn_end"
MAX_TEXT_PER_SPLIT = {"train": 2400, "dev": 700, "heldout": 700}  # sentences per language


def split_of(template: str) -> str:
    h = zlib.crc32(f"turn_end:{template}".encode()) % 5
    return "heldout" if h == 0 else "dev" if h == 1 else "train"


# -- own templates: numbers and short answers ----------------------------------------------------
def _digits(n: int, rng: random.Random) -> str:
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))


def _group(d: str, rng: random.Random, lang: str) -> str:
    style = rng.random()
    if style < 0.55 or len(d) < 4:
        return d
    if style < 0.8:
        return " ".join(d[i:i + 4] for i in range(0, len(d), 4))
    if lang == "en":
        return "-".join(d[i:i + 3] for i in range(0, len(d), 3))
    return " ".join(d[i:i + 3] for i in range(0, len(d), 3))


_NUM_EN = [("my order number is {n}", 8), ("the order number is {n}", 8), ("it's {n}", 8), ("order {n}", 8),
           ("{n}", 8), ("yeah it's {n}", 8), ("my phone number is {n}", 11), ("the number is {n}", 11),
           ("tracking number {n}", 8), ("sure, it's {n}", 8), ("order number {n}, can you check it", 8),
           ("you can reach me on {n}", 11), ("{n}", 11), ("my mobile is {n}", 11)]
_NUM_ZH = [("我的订单号是{n}", 8), ("订单号{n}", 8), ("{n}", 8), ("单号是{n}", 8), ("订单号是{n}", 8),
           ("我手机号是{n}", 11), ("手机号{n}", 11), ("{n}", 11), ("电话是{n}", 11), ("好的，订单号是{n}", 8),
           ("是{n}", 8), ("编号{n}", 8), ("我的单号是{n}你帮我查一下", 8), ("嗯，{n}", 8)]
_LAST4 = {"en": ["the last four digits are {n}", "last four {n}", "it ends in {n}"],
          "zh": ["尾号是{n}", "手机尾号{n}", "后四位是{n}"]}
_SHORT = {"en": ["yes", "no", "yeah", "okay", "sure", "no thanks", "that's right", "correct", "the black one",
                 "size 42", "yes please", "not really", "nope", "that's all", "the second one", "both",
                 "tomorrow", "thank you", "no, that's it", "yes, that's right", "right", "exactly", "go ahead",
                 "cancel it", "refund", "the red one", "medium", "not yet", "never mind", "hello", "a person",
                 "wrong size", "yes it is", "no it isn't", "I do", "I don't", "that one", "sounds good"],
          "zh": ["对", "是的", "不是", "好的", "不用了", "没有", "可以", "要", "不要", "黑色的", "42码", "对对对",
                 "行", "不需要", "明天", "就这个", "第二个", "都要", "谢谢", "没别的了", "对的", "嗯对", "没错",
                 "退款", "换货", "人工", "喂", "还没有", "算了", "取消", "红色", "中号", "是我", "不对", "收到了",
                 "好", "是", "有"]}
_FILLER = {"en": ["um", "uh", "uh,", "um,", "er", "you know,", "like,"], "zh": ["嗯", "呃", "那个", "就是", "嗯，", "这个"]}


def own_turns(rng: random.Random) -> list[dict]:
    rows = []
    for lang, temps in (("en", _NUM_EN), ("zh", _NUM_ZH)):
        for i, (temp, n) in enumerate(temps):
            template = f"own/{lang}/number/{i}"
            for _ in range(14):
                d = _digits(n, rng)
                whole = temp.format(n=_group(d, rng, lang))
                if lang == "en" and rng.random() < 0.5 and not whole.endswith("it"):
                    whole += "."
                rows.append(dict(text=whole, lang=lang, label=1, template=template, kind="number_whole",
                                 expecting_number=rng.random() < 0.5))
                if temp.endswith("{n}"):
                    k = rng.randint(2, 7) if n == 8 else rng.choice([3, 4, 5, 7, 8])
                    part = temp.format(n=_group(d[:k], rng, lang))
                    if rng.random() < 0.25:
                        part += rng.choice(["..", ",", "，"] if lang == "zh" else ["...", ",", "."])
                    rows.append(dict(text=part, lang=lang, label=0, template=template, kind="number_half",
                                     expecting_number=rng.random() < 0.5, sentence=whole))
                    cue = temp.split("{n}")[0].rstrip(" ,，")
                    if cue and rng.random() < 0.4:
                        cue += rng.choice(["", " " + rng.choice(_FILLER[lang])] if lang == "en" else ["", "，嗯"])
                        rows.append(dict(text=cue, lang=lang, label=0, template=template, kind="cue_no_number",
                                         expecting_number=rng.random() < 0.5))
        for i, temp in enumerate(_LAST4[lang]):
            for _ in range(6):
                rows.append(dict(text=temp.format(n=_digits(4, rng)), lang=lang, label=1,
                                 template=f"own/{lang}/last4/{i}", kind="number_whole", expecting_number=True))
    return rows


def short_answers() -> list[dict]:
    """Short finished answers ("对", "no", "the black one"), in the forms a recogniser writes them."""
    rng = random.Random(6)  # its own: the other rows' draws stay as they were
    rows = []
    for lang, answers in _SHORT.items():
        stop, lead = ("." if lang == "en" else "。"), (["oh ", "um, ", "well, "] if lang == "en" else ["嗯，", "哦，", "啊，"])
        for i, text in enumerate(answers):
            forms = [text, text + stop, text + stop, rng.choice(lead) + text, rng.choice(lead) + text + stop,
                     text + ("!" if lang == "en" else "！")]
            for form in forms:
                rows.append(dict(text=form, lang=lang, label=1, template=f"own/{lang}/short/{i}", kind="short",
                                 expecting_number=False))
    return rows


_EMBEDDED_EN = ["can you tell me where my package is", "do you know what the return policy is",
                "I'd like to know what the delivery fee is", "could you check what my balance is",
                "tell me what the total is", "I was wondering when the sale is", "can you tell me where it is",
                "I need to know how much it is", "do you know who the courier is", "I don't know what my order number is",
                "can you check where my refund is", "tell me how long the warranty is", "I forgot what the code was",
                "could you tell me when my delivery is", "do you know how big the box is", "what I want to know is where it is"]


def embedded_questions() -> list[dict]:
    """Finished turns that end on "is" (a wh-clause: "where my package is"), unlike "my order number is"."""
    rng = random.Random(5)  # its own: the other rows' draws stay as they were
    rows = []
    for i, text in enumerate(_EMBEDDED_EN):
        for punct in ("", "?", "."):
            lead = rng.choice(["", "hi, ", "um, ", "so ", "and "])
            rows.append(dict(text=lead + text + punct, lang="en", label=1, template=f"own/en/embedded/{i}",
                             kind="sentence", expecting_number=False))
    return rows


# -- cutting sentences ---------------------------------------------------------------------------
_EN_PAUSE_AFTER = set().union(*(_EN_CLASSES[c] for c in ("conj", "prep", "det", "aux", "subj", "want"))) - {"that"}
_ZH_PAUSE_AFTER = tuple(e for c in ("conj", "prep", "want", "de", "filler", "cue") for e in _ZH_CLASSES[c])


def en_cuts(text: str) -> list[int]:
    """Character offsets after words where a caller may pause mid-sentence (the rest still to say)."""
    spans = [m for m in re.finditer(r"[A-Za-z']+|\d+", text)]
    out = []
    for i, m in enumerate(spans[:-1]):
        if len(spans) - i - 1 >= 2 and m.group(0).lower() in _EN_PAUSE_AFTER:
            out.append(m.end())
    return out


def zh_cuts(text: str) -> list[int]:
    out = []
    n = len(re.sub(r"\W", "", text))
    for i in range(1, len(text) - 2):
        head = text[:i]
        if re.sub(r"\W", "", text[i:]) and len(re.sub(r"\W", "", text[i:])) >= 3 and head.endswith(_ZH_PAUSE_AFTER) \
                and not re.match(r"[\W吗呢吧了啊的么]", text[i]) and n >= 5:
            out.append(i)
    return out


def _punctuate(text: str, lang: str, rng: random.Random) -> str:
    if re.search(r"[.?!。？！]$", text) or rng.random() < 0.5:
        return text
    if lang == "en":
        q = re.match(r"(what|where|when|why|how|which|who|is|are|can|could|do|does|did|will|would|has|have)\b", text, re.I)
        return text + ("?" if q else ".")
    return text + ("？" if re.search(r"[吗呢]$|什么|怎么|多少|哪|几", text) else "。")


def unfinished_from(text: str, lang: str, rng: random.Random) -> list[tuple[str, str, int]]:
    """(prefix text, kind, cut offset in `text`) for a finished sentence."""
    out = []
    cuts = en_cuts(text) if lang == "en" else zh_cuts(text)
    if cuts:
        c = rng.choice(cuts)
        prefix = text[:c].rstrip(" ,，")
        r = rng.random()
        if r < 0.15:
            prefix += "..." if lang == "en" else "……"
        elif r < 0.25:
            prefix += "," if lang == "en" else "，"
        elif r < 0.35 and lang == "en":
            prefix += "."  # the recogniser sometimes closes a cut-off sentence
        out.append((prefix, "cut_function_word", c))
    # a filler after any word boundary: "I want to return the jacket, um"
    bounds = [m.end() for m in re.finditer(r"[A-Za-z']+|\d+", text)][:-2] if lang == "en" else \
        [i for i in range(2, len(text) - 3) if not re.match(r"\W", text[i])]
    if bounds and rng.random() < 0.6:
        c = rng.choice(bounds)
        prefix = text[:c].rstrip(" ,，")
        filler = rng.choice(_FILLER[lang])
        prefix = f"{prefix}, {filler}" if lang == "en" else f"{prefix}，{filler}"
        if rng.random() < 0.3:
            prefix = prefix.rstrip(",，") + ("..." if lang == "en" else "……")
        out.append((prefix, "cut_filler", -1))
    return out


# -- synthesis -----------------------------------------------------------------------------------
class _Synth:
    def __init__(self):
        from voiceagent.tts.espeak import EspeakPinyinVoice
        from voiceagent.tts.piper import PiperVoiceBackend

        self.voices = {"en": PiperVoiceBackend("piper-en-joe"), "zh": EspeakPinyinVoice()}
        self.rng = np.random.default_rng(7)

    def __call__(self, text: str, lang: str, cache: Path | None = None) -> np.ndarray:
        path = cache / f"{lang}-{zlib.crc32(text.encode()):08x}.npy" if cache else None
        if path and path.is_file():  # the same sentence synthesised before (the voice features changed)
            return np.load(path)
        audio = self._synthesize(text, lang)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, audio)
        return audio

    def _synthesize(self, text: str, lang: str) -> np.ndarray:
        chunks = list(self.voices[lang].synthesize(text))
        audio = np.concatenate([resample(c.samples, c.sample_rate, SAMPLE_RATE) for c in chunks])
        audio = audio / max(1e-6, np.abs(audio).max()) * self.rng.uniform(0.2, 0.7)
        return (audio + self.rng.normal(0, 0.002, len(audio))).astype(np.float32)  # a line's noise floor


def _speech_bounds(audio: np.ndarray) -> tuple[int, int]:
    hop = SAMPLE_RATE // 100
    e = np.array([np.mean(audio[i:i + hop] ** 2) for i in range(0, len(audio) - hop, hop)])
    loud = np.nonzero(10 * np.log10(e + 1e-10) > 10 * np.log10(e.max()) - 30)[0]
    return int(loud[0]) * hop, (int(loud[-1]) + 1) * hop


def cut_audio(audio: np.ndarray, share: float) -> np.ndarray:
    """`audio` cut at the quietest 10 ms within 120 ms of `share` of its speech."""
    start, end = _speech_bounds(audio)
    target = start + int(share * (end - start))
    hop = SAMPLE_RATE // 100
    lo, hi = max(start + hop, target - 12 * hop), min(end - hop, target + 12 * hop)
    if hi <= lo:
        return audio[:target]
    energies = [np.mean(audio[i:i + hop] ** 2) for i in range(lo, hi, hop)]
    return audio[: lo + int(np.argmin(energies)) * hop + hop // 2]


def _share(prefix: str, text: str, lang: str) -> float:
    count = (lambda s: len(re.findall(r"[A-Za-z\d]", s))) if lang == "en" else (lambda s: len(re.findall(r"\w", s)))
    return count(prefix) / max(1, count(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio-per-lang", type=int, default=240, help="sentences synthesised per language")
    ap.add_argument("--audio-cache", type=Path, default=None, help="keep the synthesised audio here (not committed)")
    args = ap.parse_args()
    rng = random.Random(23)
    rows: list[dict] = []
    seen = set()
    sentences: dict[tuple[str, str], list[dict]] = {}
    for r in load_rows("train") + load_rows("dev"):
        if r["text"] in seen or len(r["text"]) < 2:
            continue
        seen.add(r["text"])
        sentences.setdefault((r["lang"], split_of(r["template"])), []).append(r)
    for (lang, split), group in sorted(sentences.items()):
        rng.shuffle(group)
        group = group[: MAX_TEXT_PER_SPLIT[split]]
        for r in group:
            text = _punctuate(r["text"], lang, rng)
            rows.append(dict(text=text, lang=lang, label=1, template=r["template"], kind="sentence",
                             expecting_number=False))
            for prefix, kind, cut in unfinished_from(r["text"], lang, rng):
                rows.append(dict(text=prefix, lang=lang, label=0, template=r["template"], kind=kind,
                                 expecting_number=False, sentence=r["text"] if cut >= 0 else None))
        for a, b in zip(group[0:200:2], group[1:200:2]):  # two sentences in one turn
            joined = (f"{_punctuate(a['text'], lang, rng).rstrip('.?!')}. {_punctuate(b['text'], lang, rng)}"
                      if lang == "en" else f"{a['text'].rstrip('。？！')}，{_punctuate(b['text'], lang, rng)}")
            rows.append(dict(text=joined, lang=lang, label=1, template=a["template"], kind="two_sentences",
                             expecting_number=False))
    rows += own_turns(rng) + embedded_questions() + short_answers()
    for r in rows:
        r["split"] = split_of(r["template"])
    # the voice: whole sentences and the same audio cut where their unfinished prefix ends
    synth, t0 = _Synth(), time.time()
    with_audio = [r for r in rows if r.get("sentence")]
    rng.shuffle(with_audio)
    per_lang = {"en": 0, "zh": 0}
    for r in with_audio:
        lang = r["lang"]
        if per_lang[lang] >= args.audio_per_lang:
            continue
        per_lang[lang] += 1
        whole = synth(r["sentence"], lang, args.audio_cache)
        rows.append(dict(text=_punctuate(r["sentence"], lang, rng), lang=lang, label=1, template=r["template"],
                         kind="voice_whole", expecting_number=r["expecting_number"], split=r["split"],
                         audio=[round(float(v), 4) for v in audio_features(whole)]))
        prefix = re.sub(r"[\s.,，…]+$", "", r["text"])
        cut = cut_audio(whole, _share(prefix, r["sentence"], lang))
        rows.append(dict(text=r["text"], lang=lang, label=0, template=r["template"], kind="voice_cut",
                         expecting_number=r["expecting_number"], split=r["split"],
                         audio=[round(float(v), 4) for v in audio_features(cut)]))
        if sum(per_lang.values()) % 50 == 0:
            print(f"synthesised {per_lang} in {time.time() - t0:.0f} s", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "turns.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            r.pop("sentence", None)
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {}
    for r in rows:
        key = (r["split"], r["lang"], r["label"], "audio" if "audio" in r else "text")
        counts[key] = counts.get(key, 0) + 1
    for key in sorted(counts):
        print(*key, counts[key])
    print(f"wrote {len(rows)} turns to {OUT / 'turns.jsonl'} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
