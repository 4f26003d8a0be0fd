"""Transports that connect callers to the agent: SIP/RTP (telephony/sip), Asterisk AudioSocket and
AMI (telephony/asterisk), WebRTC (telephony/webrtc). Each adapts its protocol to the session's
CallLeg (voiceagent/legs/base.py); none knows anything about dialog."""
