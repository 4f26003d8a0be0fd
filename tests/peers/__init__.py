"""Real SIP peers for tests: baresip phones, a Kamailio registrar/proxy, SIPp load.

Each module's docstring tells what it drives and the quirks found by experiment. Everything binds
127.0.0.1 only, on ports from ``ports.free_port``; nothing needs root.
"""
