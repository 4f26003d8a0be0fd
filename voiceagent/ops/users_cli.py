"""`voiceagent users ...` and `voiceagent tokens ...`: the operators who log in at /console and the
API tokens, kept in the same SQLite file as the calls ([store] db)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import unicodedata

from ..errors import BadInput

ROLE_CHOICES = ("agent", "supervisor", "admin")  # auth.ROLES; repeated so that parsing imports nothing


def add_parsers(sub, parser_class) -> None:
    """The `users` and `tokens` subcommands, on the main parser's subparsers."""
    hidden_config = {"dest": "sub_config", "help": argparse.SUPPRESS}
    u = sub.add_parser("users", help="the operators who log in at /console")
    u.add_argument("--config", **hidden_config)
    usub = u.add_subparsers(dest="users_command", required=True, parser_class=parser_class)
    ua = usub.add_parser("add", help="a new operator")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=ROLE_CHOICES)
    ua.add_argument("--password-file", default=None,
                    help="file holding the password (without it: stdin if not a terminal, else asked twice)")
    ua.add_argument("--config", **hidden_config)
    up = usub.add_parser("passwd", help="a new password (the operator's sessions end)")
    up.add_argument("name")
    up.add_argument("--password-file", default=None)
    up.add_argument("--config", **hidden_config)
    ul = usub.add_parser("list", help="the operators, their roles and locks")
    ul.add_argument("--json", action="store_true")
    ul.add_argument("--config", **hidden_config)
    for action, what in (("remove", "remove an operator and end their sessions"),
                         ("unlock", "lift the lock after too many wrong passwords")):
        ux = usub.add_parser(action, help=what)
        ux.add_argument("name")
        ux.add_argument("--config", **hidden_config)

    t = sub.add_parser("tokens", help="API tokens for machines (Authorization: Bearer ...)")
    t.add_argument("--config", **hidden_config)
    tsub = t.add_subparsers(dest="tokens_command", required=True, parser_class=parser_class)
    tc = tsub.add_parser("create", help="a new token, printed once on stdout (only its hash is kept)")
    tc.add_argument("name", help="what uses it, e.g. grafana")
    tc.add_argument("--role", required=True, choices=ROLE_CHOICES)
    tc.add_argument("--config", **hidden_config)
    tl = tsub.add_parser("list", help="the tokens (never their values)")
    tl.add_argument("--json", action="store_true")
    tl.add_argument("--config", **hidden_config)
    tr = tsub.add_parser("revoke", help="revoke a token by id, or every live token with that name")
    tr.add_argument("name_or_id")
    tr.add_argument("--config", **hidden_config)


def _auth(config):
    from ..store import store_database
    from .auth import OperatorAuth

    return OperatorAuth(store_database(config.store.db, config.store.pool_size))


def _read_password(path: str | None) -> str:
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as exc:
            raise BadInput(f"cannot read password file {path}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise BadInput("the two passwords differ")
    return first


def _width(text: str) -> int:
    """Columns on a terminal: 中文 characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(rows: list[dict], columns: list[str]) -> None:
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [_width(row[i]) for row in cells]) for i, c in enumerate(columns)]
    for row in [columns] + cells:
        print("  ".join(v + " " * (w - _width(v)) for v, w in zip(row, widths)).rstrip())


def users(args, config) -> int:
    auth = _auth(config)
    try:
        if args.users_command == "add":
            auth.add_user(args.name, args.role, _read_password(args.password_file))
        elif args.users_command == "passwd":
            if not auth.has_user(args.name):  # before asking for a password
                raise BadInput(f"no operator {args.name!r}")
            auth.set_password(args.name, _read_password(args.password_file))
        elif args.users_command == "remove":
            auth.remove_user(args.name)
        elif args.users_command == "unlock":
            auth.unlock(args.name)
        elif args.users_command == "list":
            found = auth.list_users()
            if args.json:
                print(json.dumps(found, ensure_ascii=False, indent=2))
            else:
                _table(found, ["name", "role", "created_at", "disabled", "locked_until"])
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return 0


def tokens(args, config) -> int:
    auth = _auth(config)
    try:
        if args.tokens_command == "create":
            print(auth.create_token(args.name, args.role))
            if sys.stderr.isatty():
                sys.stderr.write("voiceagent: keep it now: it is not shown again\n")
        elif args.tokens_command == "revoke":
            count = auth.revoke_token(args.name_or_id)
            sys.stderr.write(f"voiceagent: {count} token{'s' if count != 1 else ''} revoked\n")
        elif args.tokens_command == "list":
            found = auth.list_tokens()
            if args.json:
                print(json.dumps(found, ensure_ascii=False, indent=2))
            else:
                _table(found, ["id", "name", "role", "created_at", "last_used_at", "revoked_at"])
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return 0
