"""End of turn from evidence: P(the caller has finished), from the words decoded at the pause and the
voice of the last few hundred milliseconds of speech.

A logistic model over two kinds of evidence:
- the words: how the turn ends (a question mark, 吗/呢, a full stop, a comma or "..."), the class of
  the last word (a filler, a conjunction, a preposition, an article or possessive, "is"/"can", "I
  want"), a number read out (how many digits against an 8-digit order or an 11-digit phone, after a
  cue or when one is expected), a number cue with no number yet, how long the turn is, and hashed
  last words / last characters (what the classes miss);
- the voice (optional): over the last ~400 ms of speech, the pitch slope and where the pitch ends
  against the turn's own, the energy slope, and how long the last voiced stretch is (a finished
  sentence falls and lengthens its last syllable; a pause mid-sentence holds the pitch up).

Trained offline (training/train_turn_end.py, numpy only); the weights are JSON
(models/turn_end/turn_end.json) and evaluation here is numpy only: well under 2 ms a call.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelMissing

SAMPLE_RATE = 16000
HASH_DIM = 1024
DEFAULT_MODEL = "models/turn_end/turn_end.json"

# -- the words ---------------------------------------------------------------------------------
_EN_CLASSES: dict[str, set[str]] = {
    "filler": {"um", "umm", "uh", "uhh", "er", "erm", "hmm", "ah", "uhm", "mm"},
    "conj": {"and", "but", "or", "so", "because", "cause", "if", "when", "then", "that", "which", "while",
             "although", "though", "since", "unless", "whether", "than", "also", "plus"},
    "prep": {"to", "of", "for", "with", "about", "from", "in", "on", "at", "by", "into", "onto", "over",
             "under", "after", "before", "between", "through", "via", "as", "per", "without", "around"},
    "det": {"the", "a", "an", "my", "your", "our", "their", "his", "her", "its", "this", "these", "those",
            "some", "another", "every", "each"},
    "aux": {"is", "was", "are", "were", "be", "been", "am", "it's", "i'm", "have", "has", "had", "do", "does",
            "did", "will", "would", "can", "could", "should", "may", "might", "must", "shall", "i'd", "i'll",
            "i've", "there's", "what's", "that's", "it'll", "we're", "they're", "you're"},
    "subj": {"i", "we", "they", "he", "she"},
    "want": {"want", "need", "like", "wanted", "needed", "wondering", "trying", "going", "gonna", "wanna",
             "hoping", "asking", "looking", "calling"},
    "wh": {"what", "where", "when", "why", "how", "which", "who", "whose"},
    "polite": {"please", "thanks", "thank", "bye", "goodbye"},
    "cue": {"number", "order", "tracking", "phone", "code", "id", "mobile"},
}
_ZH_CLASSES: dict[str, tuple[str, ...]] = {
    "filler": ("嗯", "恩", "呃", "额", "那个", "这个", "就是", "就是说"),
    "conj": ("和", "跟", "还有", "然后", "但是", "可是", "因为", "所以", "或者", "还是", "而且", "并且", "如果",
             "虽然", "不过", "另外", "以及", "就", "同时", "要是", "的话"),
    "prep": ("在", "把", "给", "对", "从", "到", "往", "向", "被", "让", "比", "关于", "用", "替", "帮"),
    "want": ("想", "要", "是", "叫", "问", "说", "想问", "想要", "请问", "需要", "能不能", "可不可以", "帮我",
             "我想", "我要", "有没有", "能", "会", "得"),
    "de": ("的", "地"),
    "q": ("吗", "呢", "么"),
    "final": ("吧", "嘛", "了", "啊", "呀", "哦", "啦", "哈", "喔"),
    "cue": ("订单号", "单号", "订单", "号码", "手机号", "电话", "尾号", "编号", "快递单号", "手机"),
}
_BACKCHANNEL_ZH = re.compile(r"^(?:嗯+|对+|是+|好+|行|可以|没错|明白|知道了|好的|对的|是的|不是|不用|不要|没有|谢谢)$")
_BACKCHANNEL_EN = {"ok", "okay", "yeah", "yes", "yep", "no", "nope", "right", "sure", "thanks", "alright"}

_ELLIPSIS = re.compile(r"(?:\.\.\.|…|——|--)\s*$")
_TRAIL_PUNCT = re.compile(r"[\s\"'”’)）]+$")
_DIGIT_TAIL = re.compile(r"(\d[\d\s\-]*)$")
_NUMBER_CUE_BEFORE = re.compile(
    r"(?:订单号|单号|号码|手机号|电话|编号|尾号|order number|order|number|tracking|phone|code)\D{0,8}$", re.I)
_LAST_FOUR_BEFORE = re.compile(r"(?:尾号|后四位|末四位|last four|last 4|ends? (?:in|with))\D{0,8}$", re.I)
_CJK = re.compile(r"[\u4e00-\u9fff]")

TEXT_FEATURES = (
    ["q_mark", "stop", "comma", "ellipsis", "no_punct"]
    + [f"en_{c}" for c in _EN_CLASSES] + ["en_other"]
    + [f"zh_{c}" for c in _ZH_CLASSES] + ["zh_other"]
    + ["digits", "digits_frac", "digits_order", "digits_phone", "digits_partial", "digits_cued", "expecting",
       "expecting_partial", "cue_no_digits", "log_words", "one_or_two_words", "backchannel", "is_zh",
       "en_wh_clause_aux", "stop_after_function_word", "closed_partial_number", "digits_last4"]
)
_FUNCTION_CLASSES = {"conj", "prep", "det", "subj", "want", "filler", "cue"}  # words a sentence does not end on
AUDIO_FEATURES = ["a_has", "a_pitch_slope", "a_final_rel", "a_energy_slope", "a_last_voiced", "a_voiced_frac"]


def detect_language(text: str, language: str = "") -> str:
    if language in ("zh", "en"):
        return language
    return "zh" if _CJK.search(text) else "en"


def _en_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?|\d+", text.lower().replace("’", "'"))


def _zh_class(bare: str) -> str:
    best, best_len = "other", 0
    for name, endings in _ZH_CLASSES.items():
        for e in endings:
            if bare.endswith(e) and len(e) > best_len:
                best, best_len = name, len(e)
    return best


def text_features(text: str, language: str = "", expecting_number: bool = False) -> tuple[np.ndarray, list[int]]:
    """The dense word features (TEXT_FEATURES order) and the hashed-feature indices of `text`."""
    lang = detect_language(text, language)
    x = dict.fromkeys(TEXT_FEATURES, 0.0)
    s = _TRAIL_PUNCT.sub("", text.strip())
    ellipsis = bool(_ELLIPSIS.search(s))
    s = re.sub(r"(?:\.\.\.|…|——|--)+\s*$", "", s).rstrip()
    last = s[-1:] if s else ""
    x["q_mark"] = float(last in "?？")
    x["stop"] = float(last in ".。!！" and not ellipsis)
    x["comma"] = float(last in ",，、;；:：")
    x["ellipsis"] = float(ellipsis)
    x["no_punct"] = float(not ellipsis and last not in "?？.。!！,，、;；:：")
    bare = re.sub(r"[\s。！？!?.,，、;；:：]+$", "", s)
    digits = _DIGIT_TAIL.search(bare)
    n_digits = sum(c.isdigit() for c in digits.group(1)) if digits else 0
    before = bare[: digits.start()] if digits else bare
    hashed: list[str] = []
    if lang == "zh":
        x["is_zh"] = 1.0
        chars = re.sub(r"[\s\W\d_]+", "", bare)
        backchannel = bool(_BACKCHANNEL_ZH.match(chars))
        if not digits:
            cls = "other" if backchannel else _zh_class(bare)  # "对" alone is "yes", not the preposition
            x[f"zh_{cls}"] = 1.0
            x["stop_after_function_word"] = float(cls in _FUNCTION_CLASSES and x["stop"])
            x["cue_no_digits"] = float(cls == "cue")
        x["log_words"] = math.log1p(len(chars) / 2)  # ~2 characters a word
        x["one_or_two_words"] = float(len(chars) <= 2 and not digits)
        x["backchannel"] = float(backchannel)
        tail = re.sub(r"\d+", "#", re.sub(r"[\s。！？!?.,，、;；:：]+", "", bare))
        hashed = [f"zc1:{tail[-1:]}", f"zc2:{tail[-2:]}", f"zc3:{tail[-3:]}"]
    else:
        words = _en_words(bare)
        if not digits and words:
            cls = next((c for c, ws in _EN_CLASSES.items() if words[-1] in ws), "other")
            x[f"en_{cls}"] = 1.0
            # the recogniser closes a cut-off sentence with "." at times: "... can I apply for a." (a "?" after
            # a preposition is an ordinary question: "who should I talk to?")
            x["stop_after_function_word"] = float(cls in _FUNCTION_CLASSES and x["stop"])
            # "... where my package is": a wh-clause closed by its verb, not "my order number is ..."
            x["en_wh_clause_aux"] = float(cls == "aux" and any(w in _EN_CLASSES["wh"] for w in words[-7:-1]))
            x["cue_no_digits"] = float(cls == "cue" or (len(words) >= 2 and words[-2] in _EN_CLASSES["cue"]
                                                        and words[-1] in ("is", "was", "it's")))
        x["log_words"] = math.log1p(len(words))
        x["one_or_two_words"] = float(len(words) <= 2 and not digits)
        x["backchannel"] = float(bool(words) and all(w in _BACKCHANNEL_EN for w in words))
        norm = ["#" if w.isdigit() else w for w in words]
        hashed = [f"ew1:{' '.join(norm[-1:])}", f"ew2:{' '.join(norm[-2:])}", f"ew3:{' '.join(norm[-3:])}"]
    if digits:
        cued = bool(_NUMBER_CUE_BEFORE.search(before))
        x["digits_last4"] = float(n_digits == 4 and bool(_LAST_FOUR_BEFORE.search(before)))
        x["digits"] = 1.0
        x["digits_frac"] = min(n_digits, 12) / 8
        x["digits_order"] = float(n_digits == 8)
        x["digits_phone"] = float(n_digits == 11)
        partial = n_digits < 8 or n_digits in (9, 10)
        x["digits_partial"] = float(partial and (cued or expecting_number or n_digits >= 3))
        x["digits_cued"] = float(cued)
        x["expecting_partial"] = float(expecting_number and partial)
        # "my order number is 38 51." : the recogniser's full stop does not finish a number read half-way
        x["closed_partial_number"] = float(x["digits_partial"] and not x["digits_last4"] and (x["stop"] or x["q_mark"]))
    x["expecting"] = float(expecting_number)
    return np.array([x[k] for k in TEXT_FEATURES], dtype=np.float64), [_hash(h) for h in hashed]


def _hash(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % HASH_DIM


# -- the voice ---------------------------------------------------------------------------------
# Analysed at 8 kHz (pitch is under 400 Hz; a phone line carries no more): 32 ms frames every 20 ms.
_RATE = 8000
_FRAME, _HOP = 256, 160
_MIN_LAG, _MAX_LAG = _RATE // 400, _RATE // 70  # pitch 70-400 Hz
_TAIL_S, _CONTEXT_S = 0.4, 1.6
_WINDOW = np.hanning(_FRAME)
# the window's own autocorrelation: dividing by it keeps a periodic frame's peak near 1 at long lags
# (low voices) instead of shrinking with the window (Boersma 1993)
_WINDOW_AC = np.correlate(_WINDOW, _WINDOW, "full")[_FRAME - 1:][: _MAX_LAG + 2] / float(_WINDOW @ _WINDOW)


def audio_features(audio: np.ndarray | None) -> np.ndarray:
    """The voice features (AUDIO_FEATURES order) of a turn's speech (16 kHz float32, ending where the
    speech ends); zeros (a_has 0) without enough audio."""
    out = np.zeros(len(AUDIO_FEATURES))
    if audio is None or len(audio) < int(0.3 * SAMPLE_RATE):
        return out
    x = np.asarray(audio[-int(_CONTEXT_S * SAMPLE_RATE):], dtype=np.float64)
    x = x[len(x) % 2:]
    x = 0.5 * (x[0::2] + x[1::2])  # to 8 kHz (the pair average is the low-pass)
    frames = np.lib.stride_tricks.sliding_window_view(x, _FRAME)[::_HOP]
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)
    # the speech ends at the last frame within 30 dB of the loudest (what the VAD let through after is not speech)
    loud = np.nonzero(energy > energy.max() - 30)[0]
    end = int(loud[-1]) + 1
    frames, energy = frames[:end], energy[:end]
    tail_n = int(_TAIL_S * _RATE / _HOP)
    if len(frames) < tail_n // 2:
        return out
    f0 = _pitch(frames, energy)
    t = np.arange(len(frames)) * _HOP / _RATE
    tail = slice(max(0, len(frames) - tail_n), len(frames))
    semis = np.where(f0 > 0, 12 * np.log2(np.maximum(f0, 1) / 100), np.nan)
    voiced = ~np.isnan(semis)
    tv = voiced[tail]
    out[0] = 1.0
    if tv.sum() >= 3:
        out[1] = np.clip(_slope(t[tail][tv], semis[tail][tv]), -60, 60) / 20
        ref = np.median(semis[voiced])
        out[2] = np.clip(np.median(semis[tail][tv][-3:]) - ref, -12, 12) / 4
    out[3] = np.clip(_slope(t[tail], energy[tail]), -150, 150) / 50
    out[4] = min(_last_voiced_run(voiced) * _HOP / _RATE / 0.2, 3.0)
    out[5] = float(tv.mean())
    return out


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    t = t - t.mean()
    return float((t @ (y - y.mean())) / max(float(t @ t), 1e-9))


def _pitch(frames: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Per frame F0 in Hz by normalised autocorrelation; 0 where unvoiced or quiet."""
    w = (frames - frames.mean(axis=1, keepdims=True)) * _WINDOW
    spec = np.fft.rfft(w, n=2 * _FRAME, axis=1)
    ac = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, axis=1)[:, : _MAX_LAG + 2]
    ac /= np.maximum(ac[:, :1], 1e-12) * _WINDOW_AC
    search = ac[:, _MIN_LAG:_MAX_LAG + 1]
    best = search.max(axis=1, keepdims=True)
    # the first peak near the best, not the best: a period's multiples score as high (octave errors)
    local = (search[:, 1:-1] >= search[:, :-2]) & (search[:, 1:-1] >= search[:, 2:]) & (search[:, 1:-1] >= 0.85 * best)
    first = np.where(local.any(axis=1), np.argmax(local, axis=1) + 1, np.argmax(search, axis=1))
    lag = first + _MIN_LAG
    peak = search[np.arange(len(lag)), first]
    ok = (peak > 0.5) & (energy > energy.max() - 25)
    return np.where(ok, _RATE / lag, 0.0)


def _last_voiced_run(voiced: np.ndarray) -> int:
    idx = np.nonzero(voiced)[0]
    if not len(idx):
        return 0
    n, i = 1, len(idx) - 1
    while i > 0 and idx[i] - idx[i - 1] <= 2:  # a one-frame gap does not end a syllable
        n += idx[i] - idx[i - 1]
        i -= 1
    return n


# -- the model ---------------------------------------------------------------------------------
@dataclass
class TurnEndModel:
    """P(the caller has finished): a logistic model over text_features and audio_features."""

    dense: np.ndarray  # weights of TEXT_FEATURES + AUDIO_FEATURES
    hashed: np.ndarray  # HASH_DIM weights of the hashed last words / characters
    bias: float
    high: float = 0.7  # P at or above: finished (the short window)
    low: float = 0.3  # P at or below: unfinished (the long window)

    @classmethod
    def load(cls, path: str | Path) -> "TurnEndModel":
        path = Path(path)
        if not path.is_file():
            raise ModelMissing(f"end-of-turn model {str(path)!r} not found: train it with "
                               "training/train_turn_end.py, or set [vad] turn_end_model = \"\" for the word rules")
        data = json.loads(path.read_text(encoding="utf-8"))
        names = TEXT_FEATURES + AUDIO_FEATURES
        if data.get("features") != names or len(data.get("hashed", [])) != HASH_DIM:
            raise ModelMissing(f"end-of-turn model {str(path)!r} was trained on other features: retrain it")
        return cls(np.array(data["dense"], dtype=np.float64), np.array(data["hashed"], dtype=np.float64),
                   float(data["bias"]), float(data["high"]), float(data["low"]))

    def to_json(self, extra: dict | None = None) -> str:
        data = {"features": TEXT_FEATURES + AUDIO_FEATURES, "bias": round(self.bias, 5),
                "high": self.high, "low": self.low,
                "dense": [round(float(w), 5) for w in self.dense],
                "hashed": [round(float(w), 4) for w in self.hashed], **(extra or {})}
        return json.dumps(data, ensure_ascii=False)

    def logit(self, text: str, language: str = "", audio: np.ndarray | None = None,
              expecting_number: bool = False) -> float:
        dense, hashed = text_features(text, language, expecting_number)
        z = self.bias + float(dense @ self.dense[: len(dense)]) + float(self.hashed[hashed].sum())
        return z + float(audio_features(audio) @ self.dense[len(dense):])

    def probability(self, text: str, language: str = "", audio: np.ndarray | None = None,
                    expecting_number: bool = False) -> float:
        """P(the caller has finished) given the turn so far (`audio`: 16 kHz float32, its speech)."""
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, self.logit(text, language, audio, expecting_number)))))


_LOADED: dict[Path, TurnEndModel] = {}


def load_model(ref: str) -> TurnEndModel:
    """The model at `ref` (a path, relative ones from the project root), loaded once."""
    from .paths import home

    path = Path(ref)
    if not path.is_absolute():
        path = home() / path
    if path not in _LOADED:
        _LOADED[path] = TurnEndModel.load(path)
    return _LOADED[path]
