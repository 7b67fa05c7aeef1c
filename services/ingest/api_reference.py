"""The API reference at `/docs`: Swagger UI, served entirely by the gateway.

Self-hosted gateways often run without outbound internet, so the page loads nothing from
another host: the UI's JavaScript, CSS and icon come from the `swagger-ui-bundle-v2`
package (pinned in pyproject.toml, so the UI changes only with a deliberate upgrade) and
are served from `/docs/assets/`; the OpenAPI description is inlined into the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path

ASSETS_PATH: Final = "/docs/assets"
ASSET_TYPES: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_ASSET_DIR: Final = Path(str(swagger_ui_path))


def swagger_ui() -> SwaggerRenderPlugin:
    """The page (at `/docs` and `/docs/swagger`), pointing at the assets served below."""
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )


@get(f"{ASSETS_PATH}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
def docs_asset(name: FromPath[str]) -> File:
    """One of the UI's files: only these, by name (the package also holds source maps and a
    demo page that would load the Petstore example from the internet)."""
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFoundException(f"No asset {name[:40]!r}")
    return File(
        path=_ASSET_DIR / name,
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )
