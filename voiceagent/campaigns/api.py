"""The operator API for campaigns, under /api/ops/campaigns (SPEC.md): create one (it starts dialling
in this process), list them, read a report, pause, resume, stop.

Like every operator route, these need an operator (ops/auth.py: a console session, with its CSRF
token on changes, or an API token); reading needs any role, changing a campaign a supervisor. A
bearer token whose SHA-256 is `[campaigns] ops_token_sha256` is still taken, as a supervisor's
(deprecated: `voiceagent tokens create NAME --role supervisor`). A report names customers, and
the server is public where the widget is.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from fastapi.responses import JSONResponse

from ..errors import BadInput
from .service import CampaignService
from .spec import campaign_from_dict, parse_contacts_text
from .store import campaign_store

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def router(app) -> APIRouter:
    """The routes; the service is made on first use, once the models are loaded."""
    api = APIRouter(prefix="/api/ops/campaigns")
    config = app.state.config

    async def allowed(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        wanted = config.campaigns.ops_token_sha256
        if wanted and header.startswith("Bearer "):
            got = hashlib.sha256(header[7:].strip().encode()).hexdigest()
            if hmac.compare_digest(got, wanted.lower()):
                return True
        role = "agent" if request.method == "GET" else "supervisor"
        try:
            await app.state.auth.require_async(request, role)  # the store asked off the event loop
        except HTTPException:
            return False
        return True

    async def service() -> CampaignService | None:
        if getattr(app.state, "campaigns", None) is None:
            if app.state.runtime is None:
                return None
            store = await asyncio.to_thread(campaign_store, config)  # may open the database: off the loop
            if getattr(app.state, "campaigns", None) is None:  # (another request may have made it meanwhile)
                app.state.campaigns = CampaignService(config, app.state.runtime, store,
                                                      phone=app.state.phone, asterisk=app.state.pbx)
        return app.state.campaigns

    async def guarded(request: Request):
        if not await allowed(request):
            return None, _error(401, "operator authentication required")
        svc = await service()
        if svc is None:
            return None, JSONResponse({"error": "loading models"}, status_code=503, headers={"Retry-After": "5"})
        return svc, None

    @api.post("")
    async def create(request: Request):
        svc, refused = await guarded(request)
        if refused:
            return refused
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "the body must be application/json")  # no cross-site form or text/plain posts
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body must be JSON: {\"campaign\": {...}, \"contacts_csv\": \"...\"}")
        if not isinstance(body, dict) or not isinstance(body.get("campaign"), dict):
            return _error(400, "body must have a \"campaign\" table (the CAMPAIGN.toml keys)")
        try:
            campaign = campaign_from_dict(body["campaign"])
            contacts, problems = None, []
            if body.get("contacts_csv") is not None:
                if not isinstance(body["contacts_csv"], str):
                    raise BadInput("contacts_csv must be the CSV text (header row first)")
                loaded = parse_contacts_text(body["contacts_csv"], "contacts_csv", config.campaigns.default_country_code)
                contacts, problems = loaded.contacts, loaded.problems
            added = await asyncio.to_thread(svc.load, campaign, contacts)
            svc.start(campaign)
        except BadInput as exc:
            return _error(400, str(exc))
        state = await asyncio.to_thread(svc.store.state, campaign.name)
        return JSONResponse({"name": campaign.name, "state": state, "added": added,
                             "rows_left_out": problems}, status_code=201)

    @api.get("")
    async def listing(request: Request):
        svc, refused = await guarded(request)
        if refused:
            return refused
        out = []
        for c in await asyncio.to_thread(svc.store.campaigns):
            report = await asyncio.to_thread(svc.report, c["name"])
            out.append({**c, "contacts": report["contacts"], "attempts": report["attempts"],
                        "outcomes": {k: v for k, v in report["outcomes"].items() if v}})
        return out

    @api.get("/{name}")
    async def report(name: str, request: Request):
        svc, refused = await guarded(request)
        if refused:
            return refused
        data = await asyncio.to_thread(svc.report, name)
        return data if data is not None else _error(404, f"no campaign named {name!r}")

    @api.post("/{name}/{action}")
    async def control(name: str, action: str, request: Request):
        svc, refused = await guarded(request)
        if refused:
            return refused
        if action not in ("pause", "resume", "stop"):
            return _error(404, f"unknown action {action!r} (pause, resume, stop)")
        try:
            state = await svc.control(name, action)
        except KeyError:
            return _error(404, f"no campaign named {name!r}")
        return {"name": name, "state": state}

    return api


async def resume_running(app) -> None:
    """At start, this worker joins every campaign left running: several workers dial one campaign
    together, each contact leased to one (their interrupted attempts are settled first)."""
    while app.state.runtime is None and not app.state.stopping:
        await asyncio.sleep(0.5)
    if app.state.stopping or app.state.runtime is None:
        return
    config = app.state.config
    store = await asyncio.to_thread(campaign_store, config)
    running = [c["name"] for c in await asyncio.to_thread(store.campaigns) if c["state"] in ("running", "waiting")]
    if not running:
        return
    if getattr(app.state, "campaigns", None) is None:
        app.state.campaigns = CampaignService(config, app.state.runtime, store, phone=app.state.phone,
                                              asterisk=app.state.pbx)
    for name in running:
        campaign = await asyncio.to_thread(store.campaign, name)
        try:
            app.state.campaigns.start(campaign)
            log.info("campaign %s resumed", name)
        except BadInput as exc:
            log.warning("campaign %s cannot resume here: %s", name, exc)
