"""An operator for tests that read the operator API of a `voiceagent serve` in another process: an
API token made with the product's own CLI (`voiceagent tokens create`), in that server's store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

VOICEAGENT = str(Path(sys.executable).with_name("voiceagent"))


def create_token(var: str | os.PathLike, config: str | os.PathLike | None = None, role: str = "admin",
                 name: str = "tests") -> str:
    """A new API token in the store under `var` (VOICEAGENT_VAR) or the config's [store] db."""
    argv = [VOICEAGENT, "tokens", "create", name, "--role", role]
    if config is not None:
        argv[1:1] = ["--config", str(config)]
    env = dict(os.environ, VOICEAGENT_VAR=str(var))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"voiceagent tokens create failed: {done.stderr.strip()}")
    return done.stdout.strip()


def get_json(url: str, token: str | None, timeout: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
