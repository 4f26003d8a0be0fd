"""Transports that connect callers to the agent: SIP/RTP (telephony/sip), Asterisk AudioSocket and
AMI (telephony/asterisk), WebRTC (telephony/webrtc). Each adapts its protocol to the session's
CallLeg (telephony/leg.py); none knows anything about dialog.

The package stands alone: it imports nothing from `voiceagent/` (the frame type and the leg contract
live here, in audio.py and leg.py, and the agent imports them), so the protocols can be read, tested
and reused without the agent. `tests/test_architecture.py` holds it to that."""
