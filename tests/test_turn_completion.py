"""End of turn from the words: finished sentences end soon, half-read numbers and fillers wait."""

import pytest

from voiceagent.config import VadConfig
from voiceagent.turn_completion import Completion, completion, is_backchannel, is_interruption, silence_window_ms


@pytest.mark.parametrize("text", [
    "Has it shipped yet?", "你好，我的快递到哪里了？", "我要退货。", "My order number is 20241108.",
    "订单号是20241108", "Can I speak to a real person, please?", "这件衣服有黑色的吗", "OK.", "嗯。",
])
def test_finished_turns_end_on_a_short_pause(text):
    assert completion(text) is Completion.COMPLETE


@pytest.mark.parametrize("text", [
    "My order number is 2024.", "The order number is 551...", "订单号是2024", "我的订单号是", "我想问一下，嗯",
    "I'd like to change my", "and, um", "It's about the, uh...", "My phone number is 138 0013", "那个……",
    "The order number is", "然后",
])
def test_unfinished_turns_wait_longer(text):
    assert completion(text) is Completion.INCOMPLETE


def test_a_short_number_is_unfinished_only_when_one_is_expected_or_cued():
    assert completion("38") is not Completion.INCOMPLETE  # "which size?" "38"
    assert completion("2024", expecting_number=True) is Completion.INCOMPLETE
    assert completion("20241108", expecting_number=True) is Completion.COMPLETE


@pytest.mark.parametrize("text", ["嗯", "嗯嗯", "对", "好的", "ok", "Okay.", "uh-huh", "yeah yeah", "Mm-hmm.", "对对对", "是的"])
def test_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["不对", "no", "wait", "等一下", "OK, but my parcel is late", "好的，我要退货", "", "hello"])
def test_not_backchannels(text):
    assert not is_backchannel(text)


def test_windows_come_from_the_config():
    # the word rules alone (no end-of-turn model: tests/test_turn_end.py has the model's windows)
    config = VadConfig(complete_silence_ms=250, unsure_silence_ms=500, incomplete_silence_ms=1800, turn_end_model="")
    assert silence_window_ms("Where is my parcel?", config) == 250
    assert silence_window_ms("where is my parcel", config) == 500
    assert silence_window_ms("the order number is 2024", config) == 1800


@pytest.mark.parametrize("text", ["不对", "等一下", "喂？", "什么？", "多少钱", "转人工", "Wait.", "No, no.", "What?",
                                  "Hold on", "Sorry?", "hello?"])
def test_short_utterances_that_stop_correct_or_ask_interrupt(text):
    assert is_interruption(text)


@pytest.mark.parametrize("text", ["嗯", "好的", "没错", "Okay.", "uh-huh",  # backchannels
                                  "号灯、号灯", "奥迪。奥迪", "out, out", "第。第。", ""])  # what Whisper made of them
def test_backchannels_and_garbled_short_sounds_do_not_interrupt(text):
    assert not is_interruption(text)


def test_a_greeting_alone_waits_for_what_the_caller_called_about():
    """"喂？" / "Hello." read as finished words, but a caller mostly goes on after a breath: the
    greeting alone gets the unsure window, the greeting with the question the complete one."""
    from voiceagent.turn_completion import is_greeting

    config = VadConfig()
    for text, lang in (("喂？", "zh"), ("您好。", "zh"), ("Hello.", "en"), ("Hi there,", "en")):
        assert is_greeting(text)
        assert silence_window_ms(text, config, language=lang) == config.unsure_silence_ms, text
    for text, lang in (("喂，我的快递到哪里了？", "zh"), ("Hello, where is my package?", "en")):
        assert not is_greeting(text)
        assert silence_window_ms(text, config, language=lang) == config.complete_silence_ms, text
