"""Emotion from the caller's words, Mandarin and English: a label and a 0-1 anger score.

Anger is hostility, exasperation, sarcasm, accusation or a threat, not the mention of something
going wrong: "my parcel arrived damaged, how do I return it?" is calm. Much of it is carried by
the construction ("你们发货前都不检查的吗？", "Who does that?") rather than by any word, so
whether a turn is angry is decided by a classifier (AngerClassifier, trained by training/train_emotion.py
on hand-labelled caller turns) over the sentence encoders the dialog already runs. How angry is
read from weighted cues (insults, threats, swearing, exasperation), combined as independent
evidence (noisy-or); a cue right after a negation ("我不生气", "not terrible") does not count.
Without the classifier's file the cues decide alone.
"""

from __future__ import annotations

import re
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..lexical import lexical
from ..model_files import ANGER_CLASSIFIER as MODEL_PATH
from ..model_files import encoder_sha

log = logging.getLogger(__name__)

ANGRY_AT = 0.5  # anger score from which a turn is labelled angry
UNCUED_MARGIN = 0.0  # (acting on anger needs more: emotion_state.TurnEmotion.clear)

# (pattern, weight). Patterns are regular expressions on the lower-cased text.
_ANGER_ZH: list[tuple[str, float]] = [
    # insults, contempt, swearing
    (r"垃圾|破(东西|玩意|店|平台|快递|客服)|什么破|烂(货|东西|平台|店)|狗屁|他妈|tm的|tmd|妈的|卧槽|我靠|靠！|滚|"
     r"废物|智障|脑子(有病|进水)|有病吧|神经病|白痴|混蛋|坑爹|黑店|奸商", 0.75),
    (r"骗子|骗人|骗钱|欺骗|忽悠|坑人|坑我|被坑|诈骗|耍我|耍人|糊弄|敷衍|装傻|推卸|踢皮球|推来推去", 0.6),
    # threats
    (r"12315|消协|消费者协会|工商|市场监管|律师|起诉|告你们|法院|曝光|媒体|微博|抖音上|小红书上|发到网上|网上说|"
     r"投诉你们|投诉到|去投诉|举报|拒付|差评|一星|维权", 0.5),
    # exasperation
    (r"受够|忍无可忍|太过分|过分了|欺人太甚|岂有此理|离谱|无语|无语了|服了|醉了|呵呵|气死|气人|生气|火大|恼火|烦死|"
     r"烦不烦|太差|差劲|太烂|恶心|恶劣|不像话|没良心|不要脸|丢人|太坑|搞什么|搞什么鬼|什么意思啊|开什么玩笑|"
     r"别跟我说|少跟我|别废话|废话少说|听不懂人话|你听得懂|有没有人管|没人管|没人理|没人回|不理人|不回消息|"
     r"什么服务|什么态度|态度(太|很|真|极)差|态度恶劣|怎么做事|怎么办事|干什么吃的|干嘛吃的|有什么用|要你们(何用|有什么用)|"
     r"还要等多久|等了(这么|那么)久|到底(要|想|什么|怎么|还|能不能|有没有|是不是)|说了(多少|好几|几)(遍|次)|"
     r"第[二三四五六七八九十几]次|(打|问|催)了(好几|几|多少|[二三四五六七八九十两])(次|遍|回)|一次又一次|一直(没|不)|"
     r"天天(打|催|问)|每次都|又是这样|又来了|又(没|不)|还是没|还是不|凭什么|有你们这样|像话吗|谁负责|负得起|"
     r"赔偿|立刻|马上给我|现在就给我|必须给我|给个说法|说法|给我退|退钱|还钱|把钱还|我的钱呢|钱呢", 0.4),
    (r"投诉|不满意|很不满|太慢|失望|太失望|不靠谱|坑|倒霉|闹心|糟心|窝火|郁闷|不耐烦|算了吧|懒得", 0.25),
    (r"怎么回事|怎么搞的|什么情况|怎么还没|到现在还|还没有|居然|竟然|简直|根本", 0.15),
]
_ANGER_EN: list[tuple[str, float]] = [
    (r"\b(fuck\w*|shit\w*|bullshit|crap|damn\w*|goddamn|hell\b|wtf|bloody|pissed|screw (you|this|it)|idiot\w*|"
     r"stupid|moron\w*|incompetent|clowns?|pathetic|disgrac\w*|disgust\w*|garbage|trash|rubbish|joke of a|"
     r"what a joke|shut up)", 0.7),
    (r"\b(scam\w*|fraud\w*|rip ?off|ripped (me )?off|ripping (people|me|us) off|cheat\w*|lie\b|lying|liars?|"
     r"lied|con artists?|thie(f|ves)|steal\w*|stole|fake\b|counterfeit)", 0.6),
    (r"\b(lawyer|attorney|sue\b|suing|legal action|court|small claims|bbb|better business|trading standards|"
     r"consumer (protection|council|agency)|report (you|this|your)|reporting (you|this)|chargeback|dispute (the|it|this)|"
     r"(bad|one[- ]star|1[- ]star|terrible|negative) review|twitter|tweet|facebook|instagram|tiktok|social media|"
     r"go public|the press|news)", 0.5),
    (r"\b(ridiculous|unacceptable|outrageous|absurd|insane|unbelievable|unreal|terrible|horrible|awful|worst|"
     r"useless|hopeless|appalling|atrocious|shocking|shameful|sick (and tired )?of|fed up|had enough|enough is enough|"
     r"tired of|i'm done|im done|furious|livid|angry|annoyed|annoying|irritat\w*|frustrat\w*|upset|mad at|so mad|"
     r"not happy|very unhappy|unhappy|beyond|are you (even )?(listening|serious|kidding)|you've got to be kidding|"
     r"kidding me|seriously\?|how (hard|difficult) is it|how many times|what is wrong with you|what's wrong with you|"
     r"(third|fourth|fifth|3rd|4th|5th|several|multiple|many|few|couple of) (times?|calls?)|time after time|"
     r"again and again|over and over|every (single )?time|keep (telling|saying|promising|getting|sending|passing)|"
     r"kept (telling|saying|promising|passing)|run ?around|runaround|passed around|pass me around|transferred (me )?around|"
     r"hung up on|nobody (has |ever )?(answer|respond|call|help|care|reply|got back)\w*|no one (has |ever )?(answer|respond|call|help|care|reply|got back)\w*|"
     r"never (got|get|answer|respond|reply|call)\w*|ignor\w*|waste of (my )?time|wasting my time|"
     r"treat(ing|ed)? (your )?customers|(right|now) now\b|immediately|right away!|or else|last chance|"
     r"i demand|demand (a|my|to)|want my money back|give me my money|money back|refund me|where is my money|"
     r"where's my money|still nothing|still no\b|yet again|once again|again\?!|\bagain!)", 0.4),
    (r"\b(complain\w*|disappoint\w*|not good enough|poor service|bad service|rude|lousy|sucks?|never again|"
     r"never (buy|order|shop)\w*|last time i|fix (it|this)|do something|seriously|honestly|whatever)", 0.25),
    (r"\b(still (haven't|hasn't|not|no)|why (is|isn't|hasn't|haven't|can't|won't|did|didn't|do|does|are)|"
     r"how come|what the|supposed to)", 0.15),
]
_NEGATION_ZH = re.compile(r"(不|没|没有|别|并不|并没|不是|不会|从不)(太|很|是|那么|怎么)?$")
_NEGATION_EN = re.compile(r"\b(not|n't|never|no|nothing|without|isn't|wasn't|aren't|don't|didn't|i'm not|im not)\b"
                          r"(\s+\w+){0,2}\s*$")
_INTENSIFIER = re.compile(r"太|真的|实在|简直|非常|特别|超级|极其|\b(so|really|very|extremely|absolutely|totally|"
                          r"completely|fucking|bloody)\b")
_SARCASM = re.compile(r"(great|wonderful|fantastic|brilliant|perfect|lovely|nice)[,.!]* (just )?(great|another|now|job|"
                      r"work|so)|thanks for nothing|thanks a lot for nothing|oh (great|wonderful|perfect)|"
                      r"真(是|行|棒|厉害)啊?，?(你们|服了)|你们可真(行|棒|厉害)|谢谢你们啊?，?(真是|又)|好一个|呵呵", re.I)

_ANXIOUS = re.compile(r"着急|急用|急着|很急|挺急|快点|赶紧|尽快|担心|急死|怕(赶不上|来不及|丢)|来得及|来不及|赶得上|"
                      r"赶不上|等着用|要用|明天就|后天就|生日|出发|走之前|心里没底|慌|不放心|能不能快|加急|催一下|"
                      r"\b(urgent\w*|asap|as soon as|worried|worry|nervous|anxious|hurry|in time|need it by|by (monday|tuesday|"
                      r"wednesday|thursday|friday|saturday|sunday|tomorrow|tonight|the weekend)|before (monday|tuesday|"
                      r"wednesday|thursday|friday|saturday|sunday|tomorrow|the weekend|my|our|i)|leaving|birthday|"
                      r"deadline|concerned|panick\w*|scared|afraid|quickly|rush|expedite|will it (make|arrive|get here))")
_HESITANT = re.compile(r"犹豫|纠结|不知道(选|买|要|该|怎么选)|选哪|哪个好|哪个更|拿不准|拿不定|要不要|考虑(一下|考虑)|"
                       r"不确定|说不好|也不知道|还是.{0,8}(好|吧)[？?]|或者.{0,8}吧|再看看|想想|可能吧|"
                       r"\b(not sure|unsure|can't decide|cannot decide|undecided|hesitat\w*|which one|torn between|"
                       r"thinking about|maybe|perhaps|i guess|don't know (which|if|whether)|either|or the|"
                       r"might|what do you (think|recommend|suggest)|should i)")
_SATISFIED = re.compile(r"谢谢|感谢|多谢|太好了|太棒|满意|不错|挺好|很好|真好|棒|辛苦了|好评|放心了|解决了|帮大忙|给力|"
                        r"\b(thank\w*|thx|great|perfect|appreciate\w*|awesome|excellent|wonderful|helpful|brilliant|"
                        r"lovely|fantastic|amazing|that's (good|fine|nice)|good job|well done|relieved|cheers|"
                        r"happy with|love (it|this|them))")
_EXCLAIM = re.compile(r"[!！]")
_CAPS = re.compile(r"\b[A-Z]{3,}\b")
_SCRIPT_ZH = re.compile(r"[\u4e00-\u9fff]")
_ANGER_RE = {lang: [(re.compile(p), w) for p, w in cues] for lang, cues in (("zh", _ANGER_ZH), ("en", _ANGER_EN))}


@dataclass
class TextEmotion:
    label: str  # angry, anxious, hesitant, neutral, satisfied
    anger: float  # 0..1
    cues: list[str] = field(default_factory=list)  # the words that counted, for the record


def _negated(before: str, lang: str) -> bool:
    if lang == "zh":
        return bool(_NEGATION_ZH.search(before[-4:]))
    return bool(_NEGATION_EN.search(before[-30:]))


def _anger(text: str) -> tuple[float, list[str]]:
    lowered = text.lower()
    evidence: list[float] = []
    cues: list[str] = []
    for lang, patterns in _ANGER_RE.items():
        for pattern, weight in patterns:
            for m in pattern.finditer(lowered):
                if _negated(lowered[: m.start()], lang):
                    continue
                before = lowered[max(0, m.start() - 12): m.start()]
                if _INTENSIFIER.search(before):
                    weight = min(0.9, weight * 1.3)
                evidence.append(weight)
                cues.append(m.group(0))
    if _SARCASM.search(lowered):
        evidence.append(0.5)
        cues.append("sarcasm")
    if evidence:
        exclaims = len(_EXCLAIM.findall(text))
        if exclaims:
            evidence.append(min(0.12 * exclaims, 0.3))
        if _CAPS.search(text):  # shouting in capitals
            evidence.append(0.25)
    miss = 1.0
    for w in evidence:
        miss *= 1.0 - w
    return 1.0 - miss, cues


def _has(pattern: re.Pattern, text: str) -> bool:
    lowered = text.lower()
    lang_of = (lambda s: "zh" if _SCRIPT_ZH.search(s) else "en")
    for m in pattern.finditer(lowered):
        if not _negated(lowered[: m.start()], lang_of(m.group(0))):
            return True
    return False


def cue_anger(text: str) -> float:
    """The cue lexicon's anger score alone (a feature of the classifier)."""
    return _anger(text)[0]


class AngerClassifier:
    """P(angry) for a turn: logistic regression on [e5 embedding, intent-encoder embedding, hashed
    n-grams, cue score]. Both embeddings are the ones the NLU and knowledge base compute for the
    same turn anyway (remembered per sentence), so this costs well under a millisecond more."""

    def __init__(self, base_embedder, intent_embedder, model: Path | None = None):
        self.base = base_embedder
        self.tuned = intent_embedder
        self.w = self.b = None
        self.threshold = 0.5
        self.lexical_weight = 1.0
        if model is not None:
            data = np.load(model)
            self.w, self.b = data["w"], float(data["b"])
            self.threshold = float(data["threshold"])
            self.lexical_weight = float(data["lexical_weight"])

    def features(self, texts: list[str]) -> np.ndarray:
        cues = np.array([[cue_anger(t)] for t in texts], dtype=np.float32)
        return np.hstack([self.base.embed(texts), self.tuned.embed(texts), self.lexical_weight * lexical(texts), cues])

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.features(texts) @ self.w + self.b)))

    def score(self, text: str) -> float:
        """P(angry) mapped so that the decision threshold sits at ANGRY_AT: 0..0.5 below it, and
        0.5..0.75 above (how much angrier is for the cues to say)."""
        p = float(self.probabilities([text])[0])
        th = self.threshold
        return ANGRY_AT * p / th if p < th else ANGRY_AT + 0.25 * (p - th) / (1 - th)


def load_anger_classifier(base_embedder, intent_embedder) -> AngerClassifier | None:
    """The trained classifier, or None (cues alone) when its file is missing or was fitted on
    another intent encoder."""
    if not MODEL_PATH.exists():
        log.warning("anger classifier %s is missing: emotion from word cues alone "
                    "(train it: python -m training.train_emotion)", MODEL_PATH)
        return None
    if str(np.load(MODEL_PATH)["encoder_sha"]) != encoder_sha():
        log.warning("anger classifier %s was fitted on another intent encoder: emotion from word cues alone "
                    "(retrain: python -m training.train_emotion)", MODEL_PATH)
        return None
    return AngerClassifier(base_embedder, intent_embedder, MODEL_PATH)


def detect_emotion(text: str, classifier: AngerClassifier | None = None) -> TextEmotion:
    cues_score, cues = _anger(text)
    anger = cues_score
    if classifier is not None and text.strip():
        model = classifier.score(text)
        # the classifier decides whether, the cues how much; a bare pass with no cue at all is too
        # thin (words it never saw, "blorp fizzle wug", land anywhere)
        angry = model >= ANGRY_AT + (0.0 if cues_score > 0 else UNCUED_MARGIN)
        anger = max(model, cues_score) if angry else min(max(model, cues_score), ANGRY_AT - 0.01)
    anger = round(min(anger, 1.0), 2)
    if anger >= ANGRY_AT:
        return TextEmotion("angry", anger, cues)
    if _has(_SATISFIED, text) and anger < 0.2 and not _SARCASM.search(text.lower()):
        return TextEmotion("satisfied", anger, cues)
    if _has(_ANXIOUS, text):
        return TextEmotion("anxious", anger, cues)
    if _has(_HESITANT, text):
        return TextEmotion("hesitant", anger, cues)
    return TextEmotion("neutral", anger, cues)
