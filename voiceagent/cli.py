"""The `voiceagent` command (interfaces fixed by SPEC.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path

from . import __version__, logging_setup
from .errors import BadInput, ConfigError, ModelMissing, VoiceAgentError

LANGS = ("zh", "en", "auto")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (SPEC)
        sys.stderr.write(f"voiceagent: {message}\n")
        sys.exit(2)


def _host_port(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}") from None


def _sip_listen(value: str) -> tuple[str, int] | None:
    return None if value == "off" else _host_port(value)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="voiceagent", description="Offline call-center voice agent for e-commerce customer service.")
    p.add_argument("--version", action="version", version=f"voiceagent {__version__}")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="answer calls and serve the HTTP API")
    s.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    s.add_argument("--http", default="127.0.0.1:8080", type=_host_port, help="HOST:PORT for HTTP (default 127.0.0.1:8080)")
    s.add_argument("--sip", default="127.0.0.1:5060", type=_sip_listen,
                   help="HOST:PORT for SIP over UDP and TCP (default 127.0.0.1:5060; 'off' for none)")
    s.add_argument("--audiosocket", default=None, type=_host_port, help="HOST:PORT for Asterisk AudioSocket (default: not served; AMI control in [asterisk])")

    c = sub.add_parser("call", help="simulate a whole call from a recording of the caller")
    c.add_argument("input", help="caller recording (WAV or any libsndfile format)")
    c.add_argument("--out", required=True, help="output directory for agent.wav and call.json")
    c.add_argument("--lang", default="auto", choices=LANGS)
    c.add_argument("--customer", default=None, help="the caller's customer id, when known (e.g. from caller ID)")
    c.add_argument("--fast", action="store_true", help="do not wait in real time between the caller's turns")
    c.add_argument("--transfer", choices=["ok", "busy", "no_answer", "rejected"], default="ok",
                   help="how a transfer to a person goes in this simulation (default: it succeeds)")
    c.add_argument("--greeting", action="store_true", help="greet the caller first, as on a live call "
                   "(off by default: recordings start speaking at once)")
    c.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    d = sub.add_parser("dial", help="place one outbound SIP call with the agent on it")
    d.add_argument("target", help="SIP URI to call, e.g. sip:alice@192.0.2.10:5060")
    d.add_argument("--sip", default="127.0.0.1:0", type=_host_port,
                   help="HOST:PORT the agent's SIP side listens on for this call (default 127.0.0.1, any port)")
    d.add_argument("--out", default=None, help="directory for call.json")
    d.add_argument("--lang", default="auto", choices=LANGS)
    d.add_argument("--customer", default=None, help="the called customer's id (personalises the call)")
    d.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    g = sub.add_parser("campaign", help="outbound marketing campaigns: run one, its report, the RFM segments")
    g.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    gsub = g.add_subparsers(dest="campaign_command", required=True, parser_class=_Parser)
    gr = gsub.add_parser("run", help="run a campaign until every contact is final or can only be tried later")
    gr.add_argument("campaign_file", help="CAMPAIGN.toml")
    gr.add_argument("--contacts", default=None, help="CONTACTS.csv (without it: the shop's customers in `segments`)")
    gr.add_argument("--sip", default="127.0.0.1:0", type=_host_port,
                    help="HOST:PORT the agent's SIP side uses for the campaign's calls (default 127.0.0.1, any port)")
    gr.add_argument("--audiosocket", default=None, type=_host_port,
                    help="HOST:PORT for the AudioSocket calls Asterisk connects after an Originate (asterisk: dial)")
    gr.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    gp = gsub.add_parser("report", help="a campaign's results")
    gp.add_argument("name")
    gp.add_argument("--json", action="store_true")
    gp.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    for action, what in (("pause", "dial no more until resumed"), ("resume", "dial again"),
                         ("stop", "dial no more; calls in progress finish")):
        ga = gsub.add_parser(action, help=f"{what} (a campaign running in `serve` or another `campaign run` follows)")
        ga.add_argument("name")
        ga.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    gs = gsub.add_parser("segments", help="the shop's customers by RFM segment")
    gs.add_argument("--json", action="store_true")
    gs.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    n = sub.add_parser("dnc", help="the do-not-call list shared by every campaign")
    n.add_argument("action", choices=("add", "remove", "list"))
    n.add_argument("phones", nargs="*")
    n.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    t = sub.add_parser("transcribe", help="speech to text")
    t.add_argument("input")
    t.add_argument("--lang", default="auto", choices=LANGS)
    t.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    u = sub.add_parser("understand", help="intent, slots, emotion for JSON lines on stdin")
    u.add_argument("--lang", default="auto", choices=LANGS)
    u.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    m = sub.add_parser("models", help="check or provision the offline models")
    m.add_argument("action", choices=("check", "fetch"))
    m.add_argument("--load", action="store_true", help="with check: also load every model and time it")
    m.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    b = sub.add_parser("db", help="the store's schema: bring it to the newest revision, or say which it is at")
    b.add_argument("action", choices=("upgrade", "current"))
    b.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)

    from .ops import users_cli  # `users ...`, `tokens ...`

    users_cli.add_parsers(sub, _Parser)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging_setup.setup(logging.INFO if args.verbose or args.command == "serve" else logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # defaults never reach for a model hub
    try:
        from .config import Config

        config = Config.load(getattr(args, "sub_config", None) or args.config)
        handler = {"serve": cmd_serve, "call": cmd_call, "dial": cmd_dial, "transcribe": cmd_transcribe,
                   "understand": cmd_understand, "models": cmd_models, "campaign": cmd_campaign,
                   "dnc": cmd_dnc, "users": cmd_users, "tokens": cmd_tokens, "db": cmd_db}[args.command]
        return handler(args, config) or 0
    except (BadInput, ConfigError) as exc:
        sys.stderr.write(f"voiceagent: {exc}\n")
        return 2
    except ModelMissing as exc:
        sys.stderr.write(f"voiceagent: model missing: {exc}\n")
        return 1
    except VoiceAgentError as exc:
        sys.stderr.write(f"voiceagent: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _lang(value: str) -> str | None:
    return None if value == "auto" else value


def cmd_call(args, config) -> int:
    from .audio import load_audio, write_wav
    from .audio.resample import resample
    from .legs import FileLeg
    from .runtime import Runtime
    from .engine import Channel, SessionOptions, run_call
    from .store import CallStore

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a directory")
    audio = load_audio(args.input, config.audio.sample_rate, config.audio.max_duration_s)
    out.mkdir(parents=True, exist_ok=True)
    runtime = Runtime.load(config)
    leg = FileLeg(audio.samples, audio.sample_rate, realtime=not args.fast)
    leg.transfer_ok = args.transfer == "ok"
    if not leg.transfer_ok:
        leg.transfer_status = args.transfer
    options = SessionOptions(language=args.lang, customer_id=args.customer,
                             greeting=args.greeting)
    store = CallStore(config.store.db, worker=config.cluster.worker)
    record = asyncio.run(run_call(runtime, leg, options, Channel("file"), store))
    track = resample(leg.agent_track(), audio.sample_rate, audio.source_rate)
    write_wav(out / "agent.wav", track, audio.source_rate)
    record.write(out / "call.json")
    print(json.dumps({"call_id": record.call_id, "out": str(out), "turns": len(record.turns),
                      "outcome": record.outcome.__dict__}, ensure_ascii=False))
    return 0


def cmd_transcribe(args, config) -> int:
    from .asr import create_asr
    from .audio import load_audio

    from .transcription import transcribe_file

    audio = load_audio(args.input, 16000, config.audio.max_duration_s)
    asr = create_asr(config.asr)
    result = transcribe_file(asr, audio.samples, config.vad, _lang(args.lang))
    print(json.dumps({
        "text": result.text,
        "language": result.language,
        "duration_s": round(audio.duration_s, 3),
        "segments": [s.__dict__ for s in result.segments],
    }, ensure_ascii=False))
    return 0


def cmd_understand(args, config) -> int:
    from .dialog.engine import DialogState
    from .runtime import Runtime

    runtime = Runtime.load(config, parts=("dialog",))
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("text", ""), str):
                raise ValueError("expected an object with a string 'text'")
        except ValueError as exc:
            print(json.dumps({"error": f"line {lineno}: {exc}"}), flush=True)
            continue
        lang = item.get("lang") or _lang(args.lang)
        lang = lang if lang in ("zh", "en") else None
        state = DialogState(customer_id=item.get("customer_id"))  # each line is its own conversation
        reply = runtime.dialog.respond(item.get("text", ""), state, lang)
        u = reply.understanding
        print(json.dumps({
            "intent": reply.intent,
            "confidence": u.confidence,
            "slots": u.slots,
            "emotion": u.emotion,
            "language": u.language,
            "dialect": u.dialect,
            "handoff": reply.handoff,
            "handoff_reason": reply.handoff_reason,
            "anger": u.anger,
            "escalation": reply.escalation.to_dict(),
            "reply": reply.text,
        }, ensure_ascii=False), flush=True)
    return 0


def cmd_models(args, config) -> int:
    from . import provision

    if args.action == "fetch":
        statuses = provision.fetch(log=lambda msg: print(msg, flush=True))
    else:
        statuses = provision.check_all()
    print(provision.format_table(statuses))
    try:
        import llama_cpp  # noqa: F401

        print("runtime llama-cpp-python: ok")
    except ImportError:
        print("runtime llama-cpp-python: missing (run: make setup); the LLM backend 'llama-cpp' cannot start")
    missing = [s for s in statuses if s.entry.required and s.state != "ok"]
    if args.load and not missing:
        from .runtime import Runtime

        rt = Runtime.load(config)
        print("load times (s): " + ", ".join(f"{k}={v}" for k, v in rt.load_times_s.items()))
    return 1 if missing else 0


def _check_free(what: str, host: str, port: int, kinds: tuple[int, ...]) -> None:
    """Refuse to start, with one clear line, when a port we are told to serve on is taken (else the
    failure surfaces as a traceback from inside the server's start-up)."""
    if port == 0:
        return
    for kind in kinds:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                sock.bind((host, port))
            except OSError as exc:
                proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
                raise BadInput(f"cannot serve {what} on {host}:{port} ({proto}): {exc.strerror or exc}") from None


def cmd_serve(args, config) -> int:
    from .server import serve

    _check_free("HTTP (--http)", args.http[0], args.http[1], (socket.SOCK_STREAM,))
    if args.sip is not None:
        _check_free("SIP (--sip)", args.sip[0], args.sip[1], (socket.SOCK_DGRAM, socket.SOCK_STREAM))
    if args.audiosocket is not None:
        _check_free("AudioSocket (--audiosocket)", args.audiosocket[0], args.audiosocket[1], (socket.SOCK_STREAM,))
    serve(config, host=args.http[0], port=args.http[1], sip=args.sip, audiosocket=args.audiosocket)
    return 0


def cmd_db(args, config) -> int:
    """`db upgrade` migrates [store] db to the head revision (what `serve` does at start, under the same lock);
    `db current` prints where it is, without changing it."""
    from . import db

    dialect, target = db.resolve(config.store.db)
    if args.action == "current":
        database = db.Database(dialect, target)
        revision = db.current_revision(database)
        database.close()
    else:
        database = db.open_database(config.store.db)
        revision = db.current_revision(database)
    print(json.dumps({"store": database.url, "revision": revision, "head": db.SCHEMA_HEAD}))
    return 0


def cmd_dial(args, config) -> int:
    from telephony.sip.address import AddressError, SipUri

    from .phone import CallFailed, PhoneService
    from .runtime import Runtime
    from .engine import SessionOptions
    from .store import CallStore

    try:
        SipUri.parse(args.target)
    except AddressError as exc:
        raise BadInput(f"not a SIP URI: {args.target} ({exc})") from None
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a directory")
    runtime = Runtime.load(config)

    async def run() -> dict:
        phone = PhoneService(config, runtime, CallStore(config.store.db, worker=config.cluster.worker), host=args.sip[0], port=args.sip[1])
        await phone.start()
        try:
            record = await phone.dial(args.target, SessionOptions(language=args.lang, customer_id=args.customer,
                                                                  greeting=True))
        except CallFailed as exc:
            return {"target": args.target, "answered": False, "outcome": exc.outcome, "sip_status": exc.status}
        finally:
            await phone.stop()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            record.write(out / "call.json")
        return {"target": args.target, "answered": True, "call_id": record.call_id, "turns": len(record.turns),
                "outcome": record.outcome.__dict__}

    result = asyncio.run(run())
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["answered"] else 1


def cmd_campaign(args, config) -> int:
    from .campaigns import cli as campaign_cli

    return {"run": campaign_cli.run, "report": campaign_cli.report, "segments": campaign_cli.segments,
            "pause": campaign_cli.control, "resume": campaign_cli.control,
            "stop": campaign_cli.control}[args.campaign_command](args, config)


def cmd_dnc(args, config) -> int:
    from .campaigns import cli as campaign_cli

    return campaign_cli.dnc(args, config)


def cmd_users(args, config) -> int:
    from .ops import users_cli

    return users_cli.users(args, config)


def cmd_tokens(args, config) -> int:
    from .ops import users_cli

    return users_cli.tokens(args, config)


if __name__ == "__main__":
    sys.exit(main())
