"""The JSON API under /api/v1/: one NinjaAPI with the sessions router (sessions/api.py).

The OpenAPI document is ninja's, generated from the schemas, served at
/api/v1/openapi.json (public: it holds no data). Ninja's Swagger page is off: it would load
its assets from a CDN.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import NinjaJSONEncoder

from sessions import api_errors
from sessions.api import router
from sessions.api_base import ApiRouter, PublicPathView
from sessions.api_events import router as events_router

PREFIX = "/api/v1/"


class SessionsApi(NinjaAPI):
    def get_content_type(self) -> str:
        # As before: ``application/json``, no charset parameter (JSON is UTF-8 by definition).
        return self.renderer.media_type or "application/json"


api = SessionsApi(
    title="Rensei sessions API",
    version="1.0.0",
    description="Create and drive agent sessions with an org API token "
    "(`Authorization: Bearer <token>`, from Settings → API tokens). Errors are JSON "
    '`{"error": "...", "fields": {"field": "message"}}`. Times are UTC. Every operation '
    "refuses query parameters it does not list with a 400 naming them.",
    openapi_url=None,
    docs_url=None,
    urls_namespace="api",
    parser=api_errors.JsonObjectParser(),
    servers=[{"url": "/"}],
    openapi_extra={
        "tags": [
            {"name": "sessions", "description": "Sessions and their lifecycle."},
            {"name": "exec", "description": "One-shot commands in a session's sandbox."},
            {"name": "events", "description": "The event feed (docs/events.md)."},
            {"name": "webhooks", "description": "Signed webhook endpoints and deliveries."},
            {"name": "meta", "description": "About the API."},
        ]
    },
)
api.add_exception_handler(ValidationError, api_errors.on_validation_error)
api.add_exception_handler(AuthenticationError, api_errors.on_authentication_error)
api.add_exception_handler(HttpError, api_errors.on_http_error)
# Outages answer 503 + Retry-After; nothing else answers with a traceback.
api.add_exception_handler(Exception, api_errors.on_unexpected)


class MetaRouter(ApiRouter):
    path_view = PublicPathView


meta = MetaRouter(auth=None)


@meta.get(
    "/openapi.json",
    url_name="api_openapi",
    operation_id="getOpenApi",
    summary="This document",
    tags=["meta"],
    response={200: dict[str, Any]},
    openapi_extra={
        "security": [],
        "responses": {200: {"description": "The OpenAPI document."}},
    },
)
def openapi(request: HttpRequest) -> Any:
    return openapi_document()


def openapi_document() -> dict[str, Any]:
    """The document as JSON has it (status codes as strings)."""
    schema = api.get_openapi_schema(path_prefix=PREFIX)
    document: dict[str, Any] = json.loads(json.dumps(schema, cls=NinjaJSONEncoder))
    return document


api.add_router("", meta)
# The events routes first: the sessions router ends with the JSON 404 for any other path.
api.add_router("", events_router)
api.add_router("", router)

# Without ninja's namespace: the routes keep their names (``api_session``…).
urlpatterns = [p for p in api.urls[0] if getattr(p, "name", "") != "api-root"]
