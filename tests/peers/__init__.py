"""Real peers for tests: baresip phones, a Kamailio registrar/proxy, SIPp load, Chromium.

Each module's docstring tells what it drives and the quirks found by experiment. Everything binds
127.0.0.1 only, on ports from ``ports.free_port``; nothing needs root.
"""

import os

import pytest


def need(available: bool, what: str):
    """Skip a test whose peer is not installed, a courtesy for machines set up by hand. CI installs
    every peer (scripts/setup.sh) and sets CI=1: there a missing one fails instead of skipping."""
    return pytest.mark.skipif(not available and not os.environ.get("CI"), reason=f"{what} not installed")
