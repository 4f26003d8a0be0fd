"""A turn encoded ahead (DialogEngine.prepare, on the transcript at a pause) is answered exactly as
one that was not, and its encoders are not run again when the final transcript says the same."""

from voiceagent.dialog.engine import DialogEngine, DialogState
from voiceagent.evals.conversations import ConversationRunner

TURNS = ["我的快避到哪里了", "Hi, has order 55120963 shipped yet?", "what is your return policy",
         "这也太慢了吧，气死我了"]


def _reply(rt, shop, text):
    r = DialogEngine(rt.nlu, shop, None, kb=rt.kb).respond(text, DialogState(language="zh", channel="voice"))
    u = r.understanding
    return r.text, r.intent, r.grounding, u.confidence, u.slots, u.text_anger, u.text_emotion, u.scores


def test_a_prepared_turn_is_answered_the_same_and_not_encoded_again(dialog_runtime, monkeypatch, tmp_path):
    rt = dialog_runtime
    shops = ConversationRunner(rt.nlu, rt.kb, workdir=tmp_path)  # each reply on a fresh demo shop (tickets)
    for i, text in enumerate(TURNS):
        unprepared = _reply(rt, shops.fresh_shop(f"a{i}"), text)
        for embedder in {rt.nlu.classifier.embedder, rt.embedder}:
            embedder._recent.clear()  # forget the turn: prepare() encodes it afresh
        engine = DialogEngine(rt.nlu, shops.fresh_shop(f"b{i}"), None, kb=rt.kb)
        engine.prepare(text)
        runs = []
        for embedder in {rt.nlu.classifier.embedder, rt.embedder}:
            model = embedder._model
            monkeypatch.setattr(embedder, "_model", _Counting(model, runs))
        prepared = engine.respond(text, DialogState(language="zh", channel="voice"))
        monkeypatch.undo()
        u = prepared.understanding
        assert (prepared.text, prepared.intent, prepared.grounding, u.confidence, u.slots, u.text_anger,
                u.text_emotion, u.scores) == unprepared
        assert runs == [], f"{text!r}: encoded again after prepare(): {runs}"


def test_prepare_ignores_turns_without_words(dialog_runtime):
    engine = DialogEngine(dialog_runtime.nlu, dialog_runtime.shop, None, kb=dialog_runtime.kb)
    engine.prepare("")
    engine.prepare("  ... ")


class _Counting:
    """An encoder that notes every sentence it is asked to encode."""

    def __init__(self, model, runs: list):
        self._model, self._runs = model, runs

    def query(self, texts):
        self._runs.extend(texts)
        return self._model.query(texts)

    def passage(self, texts):
        self._runs.extend(texts)
        return self._model.passage(texts)
