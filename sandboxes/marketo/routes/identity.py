"""The identity service: `GET|POST /identity/oauth/token` (client credentials).

Not a data call: no token needed, not counted against any limit. Errors here are HTTP
errors in OAuth's shape, not Marketo's envelope: 400 for a bad grant type, 401 for bad
credentials.
"""

from __future__ import annotations

from aiohttp import web

from sandboxes.marketo.keys import STATE_KEY

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/identity/oauth/token")
@routes.post("/identity/oauth/token")
async def token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    params = dict(request.query)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    if params.get("grant_type") != "client_credentials":
        return web.json_response(
            {
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be client_credentials",
            },
            status=400,
        )
    config = state.config
    if (params.get("client_id"), params.get("client_secret")) != (
        config.client_id,
        config.client_secret,
    ):
        return web.json_response(
            {"error": "unauthorized", "error_description": "Bad client credentials"}, status=401
        )
    issued = state.tokens.issue(config.client_id)
    return web.json_response(
        {
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        }
    )
