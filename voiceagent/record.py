"""The record of one call, as written to call.json (SPEC.md) and to the store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .textnorm import mask_pii


@dataclass
class CallerTurn:
    text: str
    start_s: float
    end_s: float
    intent: str
    confidence: float
    slots: dict[str, str]
    emotion: str
    language: str
    dialect: str | None
    anger: float = 0.0  # 0..1, words and voice together
    text_emotion: str = "neutral"  # from the words alone
    emotion_from: list[str] = field(default_factory=list)  # what made it angry: "words", "voice", "model"
    voice: dict | None = None  # the voice's measures and their change from the caller's baseline
    escalation: dict | None = None  # the policy's decision on this turn: action, reason, detail, target
    task: dict | None = None  # the task the conversation is on after this turn: kind, slots, awaiting, done
    role: str = "caller"


@dataclass
class AgentTurn:
    text: str
    start_s: float
    end_s: float
    latency_ms: dict[str, float | None]
    reply_source: str = "template"
    grounding: list[str] = field(default_factory=list)
    handoff: bool = False
    # "reply" answers a caller turn; "greeting", "reprompt", "goodbye" and "notice" are the agent's
    # own (their voice_to_voice counts from what triggered them: the answer, the silence timer...)
    kind: str = "reply"
    interrupted: bool = False  # the caller barged in: `heard_text` is what they heard of `text`
    heard_text: str | None = None
    role: str = "agent"


@dataclass
class Outcome:
    handoff: bool = False
    handoff_reason: str | None = None
    resolved: bool = False
    handoff_target: str | None = None
    transfer_ok: bool | None = None
    transfer_status: str | None = None  # "completed", "busy", "no_answer", "rejected", "refused", "failed"
    callback_ticket: str | None = None  # booked when the transfer failed
    ended_by: str = "caller"  # "caller", "agent", "transfer", "error"
    end_reason: str | None = None  # why the agent ended it: "silence", "max_duration", "stage_errors", "goodbye"
    error: str | None = None


@dataclass
class CallRecord:
    call_id: str
    language: str
    customer_id: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    duration_s: float = 0.0
    turns: list[CallerTurn | AgentTurn] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    slots: dict[str, str] = field(default_factory=dict)
    dialect: str | None = None  # the call's, steadied over the turns
    emotion: dict = field(default_factory=dict)  # running and peak anger at the end
    handoff: dict | None = None  # the summary handed to the human (dialog/handoff.py)
    campaign: dict | None = None  # a campaign call: campaign, script, outcome, coupon (dialog/flows/marketing.py)
    rating: int | None = None  # the caller's own score of the call, 1-5 ("press 1 to 5" after goodbye)
    # supervisors who took the call over: operator, from_s, to_s (None: held to the end)
    supervision: list[dict] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    worker: str = ""  # the `voiceagent serve` process that took the call ([cluster] worker), set when stored
    channel: dict = field(default_factory=dict)  # the transport's side: SIP peer (masked), codec, RTP counters, transfers
    # What the real-time engine saw: frames in, dropped (late/duplicate), silence filled for gaps,
    # playout underruns, barge-ins, backchannels let through, stage failures.
    stats: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["turns"] = [_turn_dict(t) for t in self.turns]
        return data

    def masked(self) -> dict:
        """The record with personal data masked, for logs and the store."""
        data = self.to_dict()
        for turn in data["turns"]:
            turn["text"] = mask_pii(turn["text"])
            if turn.get("heard_text"):
                turn["heard_text"] = mask_pii(turn["heard_text"])
            if "slots" in turn:
                turn["slots"] = {k: mask_pii(v) if k in ("phone", "address") else v for k, v in turn["slots"].items()}
            if turn.get("task"):
                task_slots = turn["task"]["slots"]
                turn["task"]["slots"] = {k: mask_pii(v) if k in ("phone", "address") else v for k, v in task_slots.items()}
        data["slots"] = {k: mask_pii(v) if k in ("phone", "address") else v for k, v in data["slots"].items()}
        return data

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _turn_dict(turn: CallerTurn | AgentTurn) -> dict:
    data = asdict(turn)
    ordered = {"role": data.pop("role")}
    ordered.update(data)
    return ordered
