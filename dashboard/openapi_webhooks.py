"""The webhook part of the OpenAPI document (:mod:`dashboard.openapi` merges it in): schemas
and paths of ``/webhooks``, served by :mod:`dashboard.webhooks`."""

from __future__ import annotations

from typing import Any

from dashboard.openapi_refs import errors as _errors
from dashboard.openapi_refs import ok as _ok
from dashboard.openapi_refs import ref




_TIME = {"type": "number", "description": "s since the epoch"}
_NTIME = {"type": "number", "nullable": True, "description": "s since the epoch"}

SCHEMAS: dict[str, Any] = {
    "Webhook": {"type": "object", "required": ["id", "url", "created_at"], "properties": {
        "id": {"type": "integer"}, "url": {"type": "string"}, "created_at": _TIME,
        "secret": {"type": "string", "nullable": True,
                   "description": "your signing secret, only in the answer that made it (your "
                                  "first webhook); null otherwise"}}},
    "WebhookRequest": {"type": "object", "required": ["url"], "additionalProperties": False,
                       "properties": {"url": {"type": "string", "maxLength": 2000,
                                              "description": "https:// URL of a public host"}}},
    "WebhookList": {"type": "object", "required": ["webhooks", "has_secret"], "properties": {
        "webhooks": {"type": "array", "items": ref("Webhook")},
        "has_secret": {"type": "boolean"}}},
    "WebhookSecret": {"type": "object", "required": ["secret"], "properties": {
        "secret": {"type": "string", "description": "64 hex characters (shown this once)"}}},
    "WebhookDelivery": {"type": "object", "required": ["id", "job_id", "status", "attempts"],
                        "properties": {
        "id": {"type": "string", "description": "the X-Raas-Delivery header"},
        "webhook_id": {"type": "integer"}, "job_id": {"type": "string"},
        "event": {"type": "string", "enum": ["job.ended"]},
        "state": {"type": "string", "description": "the job's final state"},
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer"}, "created_at": _TIME, "last_attempt_at": _NTIME,
        "next_attempt_at": _NTIME,
        "last_status_code": {"type": "integer", "nullable": True},
        "last_error": {"type": "string", "nullable": True}}},
    "WebhookDeliveryList": {"type": "object", "required": ["deliveries"], "properties": {
        "deliveries": {"type": "array", "items": ref("WebhookDelivery")}}},
}

PATHS: dict[str, Any] = {
    "/webhooks": {
        "get": {"operationId": "listWebhooks", "tags": ["webhooks"],
                "summary": "Your webhooks (never the secret)",
                "responses": {"200": _ok("WebhookList", "the webhooks"), **_errors(401)}},
        "post": {"operationId": "createWebhook", "tags": ["webhooks"],
                 "summary": "Add a URL called when one of your jobs ends (https, public "
                            "address); your first one answers with your signing secret",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": ref("WebhookRequest")}}},
                 "responses": {"201": _ok("Webhook", "the webhook"),
                               **_errors(400, 401, 409, 413, 415)}}},
    "/webhooks/{webhook_id}": {"delete": {
        "operationId": "deleteWebhook", "tags": ["webhooks"],
        "parameters": [{"name": "webhook_id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 0}}],
        "summary": "Delete one of your webhooks (and its pending deliveries)",
        "responses": {"200": _ok("Webhook", "the deleted webhook"), **_errors(401, 404)}}},
    "/webhooks/secret": {"post": {
        "operationId": "rotateWebhookSecret", "tags": ["webhooks"],
        "summary": "Make a new signing secret (shown once); later deliveries use it",
        "responses": {"201": _ok("WebhookSecret", "the new secret"), **_errors(401)}}},
    "/webhooks/deliveries": {"get": {
        "operationId": "listWebhookDeliveries", "tags": ["webhooks"],
        "summary": "Your last deliveries, newest first, with their status",
        "parameters": [{"name": "limit", "in": "query", "schema": {
            "type": "integer", "minimum": 1, "maximum": 200, "default": 20}}],
        "responses": {"200": _ok("WebhookDeliveryList", "the delivery log"),
                      **_errors(400, 401)}}},
}
