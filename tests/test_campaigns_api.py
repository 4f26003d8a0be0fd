"""The operator API for campaigns (/api/ops/campaigns) on the real app, and a dial target that answers
with garbage SDP: the attempt fails cleanly, is audited, and the campaign goes on."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import socket
import time

from fastapi.testclient import TestClient

from voiceagent.campaigns.dialer import CampaignRunner
from voiceagent.campaigns.placers import SipPlacer
from voiceagent.campaigns.spec import Contact, campaign_from_dict
from voiceagent.campaigns.store import CampaignStore
from voiceagent.phone import PhoneService
from voiceagent.server import create_app

TOKEN = "ops-secret-token"
CONTACTS = ("ref,phone,customer_id,language,timezone,consent\n"
            "d1,13600000001,,zh,Asia/Shanghai,no\n"      # no consent: never dialled
            "d2,13600000002,,zh,Asia/Shanghai,yes\n"     # put on the do-not-call list first
            "d3,not-a-phone,,zh,Asia/Shanghai,yes\n")    # left out, reported


def test_operator_api_creates_lists_controls_and_reports_a_campaign(config, runtime, tmp_path):
    cfg = copy.deepcopy(config)
    cfg.store.db = str(tmp_path / "calls.db")
    cfg.campaigns.ops_token_sha256 = hashlib.sha256(TOKEN.encode()).hexdigest()
    CampaignStore(cfg.store.db).dnc_add(["13600000002"])
    app = create_app(cfg, runtime=runtime, sip=("127.0.0.1", 0))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"campaign": {"name": "api-sale", "dial": "sip:{phone}@127.0.0.1:9", "window": ["00:00", "23:59"]},
            "contacts_csv": CONTACTS}
    with TestClient(app) as http:
        # not from this machine and no token: nothing about campaigns
        assert http.get("/api/ops/campaigns").status_code == 401
        assert http.post("/api/ops/campaigns", json=body).status_code == 401
        assert http.get("/api/ops/campaigns", headers={"Authorization": "Bearer wrong"}).status_code == 401
        bad = http.post("/api/ops/campaigns", headers=auth, json={"campaign": {**body["campaign"], "colour": "red"}})
        assert bad.status_code == 400 and "colour" in bad.json()["error"]
        created = http.post("/api/ops/campaigns", headers=auth, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["added"] == 2 and "line 4" in created.json()["rows_left_out"][0]
        listing = http.get("/api/ops/campaigns", headers=auth).json()
        assert [c["name"] for c in listing] == ["api-sale"]
        assert http.post("/api/ops/campaigns/api-sale/pause", headers=auth).json()["state"] == "paused"
        assert http.post("/api/ops/campaigns/api-sale/resume", headers=auth).json()["state"] == "running"
        assert http.post("/api/ops/campaigns/api-sale/stop", headers=auth).json()["state"] == "stopped"
        assert http.post("/api/ops/campaigns/api-sale/explode", headers=auth).status_code == 404
        assert http.get("/api/ops/campaigns/nope", headers=auth).status_code == 404
        report = http.get("/api/ops/campaigns/api-sale", headers=auth).json()
        over = http.post("/api/ops/campaigns", headers=auth,
                         json={"campaign": {**body["campaign"], "name": "too-generous", "offer": {"amount": 500}}})
        assert over.status_code == 400 and "limit" in over.json()["error"]
        assert http.post("/api/ops/campaigns", headers={**auth, "content-type": "text/plain"},
                         content=b'{"campaign": {}}').status_code == 415
    outcome = {c["ref"]: c["outcome"] for c in report["contacts_detail"]}
    assert outcome == {"d1": "no_consent", "d2": "dnc"}
    assert report["attempts"] == 0 and set(report["outcomes"]) >= {"converted", "machine", "dnc", "pending"}


def test_an_operator_is_needed_even_from_this_machine(config, runtime, tmp_path):
    cfg = copy.deepcopy(config)
    cfg.store.db = str(tmp_path / "calls.db")
    app = create_app(cfg, runtime=runtime, sip=("127.0.0.1", 0))
    with TestClient(app, client=("127.0.0.1", 50123)) as http:
        # loopback is no login (a reverse proxy on this machine passes on requests from anywhere)
        assert http.get("/api/ops/campaigns").status_code == 401
        agent = {"Authorization": f"Bearer {app.state.auth.create_token('watcher', 'agent')}"}
        assert http.get("/api/ops/campaigns", headers=agent).status_code == 200  # any operator reads
        r = http.post("/api/ops/campaigns/x/pause", headers=agent)
        assert r.status_code == 401  # changing one takes a supervisor
        app.state.auth.add_user("lin", "supervisor", "a-long-password")
        login = http.post("/api/ops/login", json={"name": "lin", "password": "a-long-password"})
        assert login.status_code == 200
        # logged in at the console: a change without the page's CSRF token is refused, with it done
        assert http.post("/api/ops/campaigns/nope/pause").status_code == 401
        r = http.post("/api/ops/campaigns/nope/pause", headers={"X-CSRF-Token": login.json()["csrf"]})
        assert r.status_code == 404


class _GarbageSdpPhone:
    """A UDP SIP peer that answers every INVITE with 200 OK and a body that is not SDP."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.invites = 0

    async def serve(self):
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await loop.sock_recvfrom(self.sock, 65536)
            text = data.decode("utf-8", "replace")
            if not text.startswith("INVITE"):
                continue
            self.invites += 1
            head = {line.split(":", 1)[0].lower(): line for line in text.split("\r\n") if ":" in line}
            body = "this is not SDP at all \x00\x01"
            reply = ("SIP/2.0 200 OK\r\n" + head["via"] + "\r\n" + head["from"] + "\r\n" + head["to"] + ";tag=x1\r\n"
                     + head["call-id"] + "\r\n" + head["cseq"] + "\r\n" + f"Contact: <sip:x@127.0.0.1:{self.port}>\r\n"
                     + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}")
            self.sock.sendto(reply.encode(), addr)


def test_a_target_answering_with_garbage_sdp_fails_cleanly_and_is_audited(config, tmp_path):
    async def scenario():
        peer = _GarbageSdpPhone()
        serving = asyncio.create_task(peer.serve())
        cfg = copy.deepcopy(config)
        phone = PhoneService(cfg, lambda: None, host="127.0.0.1", port=0)  # no models needed: nobody talks
        await phone.start()
        store = CampaignStore(tmp_path / "calls.db")
        campaign = campaign_from_dict({"name": "garbage", "dial": f"sip:{{phone}}@127.0.0.1:{peer.port}",
                                       "window": ["00:00", "23:59"], "max_attempts": 2, "retry_after_s": 0.2,
                                       "amd": False})
        store.save_campaign(campaign, [Contact("g1", "13500000001", timezone="UTC")])
        try:
            t0 = time.monotonic()
            await CampaignRunner(campaign, store, SipPlacer(phone, campaign.dial), None).run()
            elapsed = time.monotonic() - t0
        finally:
            serving.cancel()
            await phone.stop()
        return peer, store, elapsed

    peer, store, _elapsed = asyncio.run(scenario())
    attempts = store.attempts("garbage")
    assert peer.invites == 2 and len(attempts) == 2
    assert all(a["outcome"] == "failed" and a["sip_status"] == 488 for a in attempts)
    assert store.contacts("garbage")[0].outcome == "failed"

