"""`POST /v1/hooks/orthanc`: Orthanc's Lua `OnStableStudy` → `HttpPost` wakes the poller.

The request only says "look now": its body is not read, and nothing in it is trusted or
stored. The poller (medlens.integrations.orthanc_changes, run by `medlens listen`) then
reads Orthanc's `/changes` feed, which stays the one source of truth; a hook that is lost
(MedLens down, a network blip) costs nothing but the wait for the next poll.

Who may call: the configured hook token (`MEDLENS_HOOK_TOKEN`, sent by the Lua script as
`Authorization: Bearer …`), else an authenticated admin (or the loopback single user).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request

from medlens.server.deps import api_actor, get_state
from medlens.server.ratelimit import caller_key
from medlens.server.security import Actor
from medlens.server.services.access import sees_all

router = APIRouter()


def _hook_actor(request: Request) -> Actor:
    state = get_state(request)
    token = state.settings.hook_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if (
        token is not None
        and given
        and hmac.compare_digest(given.encode(), token.get_secret_value().encode())
    ):
        actor = Actor(name="hook:orthanc", kind="token", role="admin")
        host = request.client.host if request.client is not None else None
        state.limiter.check(caller_key(actor, host))
        return actor
    actor = api_actor(request)  # 401/403 for no or a wrong credential, rate-limited
    if not sees_all(actor):
        raise HTTPException(403, "Only an admin or the hook token may wake the poller.")
    return actor


@router.post("/v1/hooks/orthanc", status_code=202, tags=["integration"])
def orthanc_hook(request: Request) -> dict[str, str]:
    """Wake the Orthanc `/changes` poller now (202; the body is ignored)."""
    from medlens.integrations.orthanc_changes import request_wake

    _hook_actor(request)
    state = get_state(request)
    request_wake(state.store)
    poller = state.extra.get("orthanc_poller")
    if poller is not None:  # a poller in this process: no need to wait for its next tick
        poller.wake()
    return {"status": "woken", "detail": "the poller reads Orthanc's /changes next"}
