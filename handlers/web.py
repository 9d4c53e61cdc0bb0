"""What the web server adds around every adapter's routes: the headers of every answer, and the
hospital API's interactive documentation, served from this process alone.

Swagger UI is the pinned copy in handlers/static/swagger-ui/ (its README says which and how to
update it): a hospital network often has no internet, and a page that loads its script from a CDN
runs whatever the CDN serves that day.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SWAGGER_UI = Path(__file__).resolve().parent / "static" / "swagger-ui"
ASSETS_PATH = "/docs/assets"
_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


class SafeHeaders:
    """Every answer says `X-Content-Type-Options: nosniff` (a browser takes it as the type it
    names, never as a script it guessed), and `Cache-Control: no-store` unless it says otherwise:
    patient data must stay out of browser and proxy caches."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def docs_router(openapi_url: str, title: str) -> APIRouter:
    """`GET /docs`, Swagger UI for the OpenAPI document at `openapi_url`, and its files."""
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # By default Swagger UI sends the document to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @router.get(ASSETS_PATH + "/{name}")
    async def swagger_ui_file(name: str) -> FileResponse:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        # They change only with the pinned copy: a browser may keep them for a day.
        return FileResponse(
            SWAGGER_UI / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
        )

    return router
