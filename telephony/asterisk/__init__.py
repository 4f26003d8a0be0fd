"""Asterisk: AudioSocket media (`audiosocket` sans-IO framing, `server` the TCP side, `leg` the
engine's CallLeg) and AMI call control (`ami`, on panoramisk). The service that runs calls on them
is voiceagent/pbx.py; the Asterisk configuration that matches is docker/asterisk/."""
