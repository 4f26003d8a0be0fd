"""The browser as a phone: WebRTC (aiortc) adapted to the engine's CallLeg, and the checks on a
page's offer. The HTTP side is voiceagent/browser.py and server.py."""
