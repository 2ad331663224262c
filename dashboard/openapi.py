"""The OpenAPI 3.0 document of the JSON API (served at ``/api/v1/openapi.json``), written by hand.

Kept next to :mod:`dashboard.api`; ``tests/dashboard/test_openapi.py`` validates it with
openapi-spec-validator and fuzzes every operation against it with schemathesis.
"""

from __future__ import annotations

from typing import Any

from dashboard import openapi_runs, openapi_scaling, openapi_timeline, openapi_webhooks
from dashboard.openapi_refs import errors as _errors
from dashboard.openapi_refs import ref as _ref
from gym_raas_mqtt import __version__
from gym_raas_mqtt.protocol import ID_PATTERN, JobState, NodeStatus

_STATES = [s.value for s in JobState]
_ID = {"type": "string", "pattern": ID_PATTERN.pattern}




def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}




def _job_id_param() -> dict[str, Any]:
    return {"name": "job_id", "in": "path", "required": True, "schema": _ID,
            "description": "job id (16 hex characters for new jobs), or a unique prefix of at "
                           "least 4 of them (an ambiguous one is 400, listing the candidates)"}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document as a dict."""
    responses = {f"E{c}": _json(_ref("Error"), d)
                 for c, d in {400: "invalid input", 401: "not logged in",
                              403: "another user's job; an operator's action", 404: "not found",
                              409: "conflict with the job's state", 413: "upload too large",
                              422: "a result file is malformed",
                              415: "unsupported media type", 503: "unavailable"}.items()}
    responses["E429"] = _json(_ref("Error"), "too many login attempts for this user name or from "
                              "this address; retry after Retry-After seconds") | {
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                    "description": "seconds until the attempt may be repeated"}}}
    responses["Error"] = _json(_ref("Error"), "an error")
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error", "reason"], "properties": {
            "error": {"type": "string", "description": "machine-readable kind"},
            "reason": {"type": "string", "description": "what was wrong, for humans"},
            "field": {"type": "string", "nullable": True,
                      "description": "the submission field at fault"}}},
        "Source": {"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "enum": ["git", "archive"]},
            "url": {"type": "string", "nullable": True},
            "ref": {"type": "string", "nullable": True},
            "archive_key": {"type": "string", "nullable": True}}},
        "Job": {"type": "object", "required": ["id", "owner", "state", "source", "time_limit_s",
                                               "submitted_at", "terminal"], "properties": {
            "id": _ID, "owner": {"type": "string"},
            "state": {"type": "string", "enum": _STATES},
            "terminal": {"type": "boolean", "description": "the state is final"},
            "source": _ref("Source"),
            "time_limit_s": {"type": "number", "description": "wall-clock limit [s]"},
            "submitted_at": {"type": "number", "description": "s since the epoch"},
            "started_at": {"type": "number", "nullable": True},
            "finished_at": {"type": "number", "nullable": True},
            "node_id": {"type": "string", "nullable": True},
            "attempts": {"type": "integer"},
            "commit_sha": {"type": "string", "nullable": True,
                           "description": "the commit that ran (pinned at clone time)"},
            "reason": {"type": "string", "nullable": True},
            "cancel_requested": {"type": "boolean"},
            "queue_position": {"type": "integer", "nullable": True,
                               "description": "1-based position while queued"},
            "summary": {"type": "object", "nullable": True, "additionalProperties": True,
                        "description": "summary.json of the result bundle"},
            "live": {"type": "object", "nullable": True, "description":
                     "latest live telemetry seen: episode_id, step, episode_reward, theta [rad]",
                     "additionalProperties": True},
            "facts": {"$ref": "#/components/schemas/JobFacts"}, **openapi_runs.JOB_FIELDS}},
        "JobList": {"type": "object", "required": ["jobs"], "properties": {
            "jobs": {"type": "array", "items": _ref("Job")}, **openapi_runs.LIST_FIELDS}},
        "GitSubmission": {"type": "object", "required": ["url"], "additionalProperties": False,
                          "properties": {
            "url": {"type": "string", "maxLength": 2048, "description":
                    "https:// or ssh:// URL or git@host:path (file:///path where the "
                    "operator allows it); resolved with git ls-remote at submission"},
            "ref": {"type": "string", "nullable": True, "maxLength": 200,
                    "description": "branch, tag or commit; default branch when absent; "
                                   "the job is pinned to the commit it names"},
            "time_limit_s": {"type": "number", "nullable": True,
                             "description": "wall-clock limit [s] within the server's bounds"},
            **openapi_runs.SUBMISSION_FIELDS}},
        "ArchiveSubmission": {"type": "object", "required": ["archive"], "properties": {
            "archive": {"type": "string", "format": "binary",
                        "description": ".tar.gz/.tgz/.zip with run.py at its root"},
            "time_limit_s": {"type": "string", "description": "wall-clock limit [s]"},
            **openapi_runs.FORM_FIELDS}},
        "ResultFile": {"type": "object", "required": ["name", "size", "url"], "properties": {
            "name": {"type": "string"}, "size": {"type": "integer"}, "url": {"type": "string"}}},
        "ResultList": {"type": "object", "required": ["job_id", "files"], "properties": {
            "job_id": _ID, "state": {"type": "string", "enum": _STATES},
            "files": {"type": "array", "items": _ref("ResultFile")}}},
        "SelfTest": {"type": "object", "required": ["at", "ok"], "properties": {
            "at": {"type": "number", "description": "when it ended [s since the epoch]"},
            "ok": {"type": "boolean"},
            "duration_s": {"type": "number", "nullable": True, "description": "how long [s]"},
            "max_error_rad": {"type": "number", "nullable": True,
                              "description": "residual: largest |θ − θ_model| [rad]"},
            "rms_error_rad": {"type": "number", "nullable": True,
                              "description": "residual: RMS of θ − θ_model [rad]"},
            "reason": {"type": "string", "nullable": True, "description": "why it failed"},
            "details": {"type": "object", "nullable": True, "additionalProperties": True}}},
        "Node": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "nullable": True,
                      "enum": [s.value for s in NodeStatus] + [None]},
            "current_job": {"type": "string", "nullable": True},
            "reason": {"type": "string", "nullable": True},
            "last_seen": {"type": "number", "nullable": True,
                          "description": "last state or heartbeat [s since the epoch]"},
            "run_hours": {"type": "number", "description": "job run time on this node [h]"},
            "backend": {"type": "string", "nullable": True},
            "software_version": {"type": "string", "nullable": True},
            "calibration_id": {"type": "string", "nullable": True},
            "image_digest": {"type": "string", "nullable": True},
            "draining": {"type": "boolean", "description": "finishes its job, gets no new one"},
            "standby": {"type": "boolean", "description": "kept in standby: motor off, no job"},
            "maintenance": {"type": "string", "nullable": True, "description":
                            "why the dispatcher assigns it nothing until clear_maintenance"},
            "error_streak": {"type": "integer",
                             "description": "consecutive executions ended with a platform error"},
            "selftests": {"type": "array", "items": _ref("SelfTest"),
                          "description": "the latest self-tests, newest first"}}},
        "FleetKeys": {"type": "object", "required": ["schema", "algorithm", "nodes"],
                      "properties": {
            "schema": {"type": "integer"}, "algorithm": {"type": "string", "enum": ["ed25519"]},
            "nodes": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["public_key"], "properties": {
                    "public_key": {"type": "string", "description": "base64, 32 raw bytes"},
                    "enrolled_at": {"type": "number", "nullable": True}}}}}},
        "FleetKeyReset": {"type": "object", "required": ["node_id", "public_key"], "properties": {
            "node_id": {"type": "string"},
            "public_key": {"type": "string", "nullable": True,
                           "description": "enrolled now; null: the next one announced"}}},
        "Telemetry": {"type": "object", "required": ["job_id", "samples", "points", "columns"],
                      "properties": {
            "job_id": _ID,
            "samples": {"type": "integer", "description": "rows recorded"},
            "points": {"type": "integer", "description": "rows sent"},
            "decimated": {"type": "boolean"},
            "columns": {"type": "object", "description": "t [s, episodes end to end], theta "
                        "[rad, wrapped], theta_dot [rad/s], u_desired, u_applied, reward",
                        "additionalProperties": {"type": "array",
                                                 "items": {"type": "number", "nullable": True}}},
            "episode_starts": {"type": "array", "items": {"type": "number"},
                               "description": "where each episode starts on t [s]"},
            "deadline_misses": {"type": "array", "items": {"type": "number"},
                                "description": "t of each missed deadline [s] (the first 10 000)"},
            "deadline_miss_count": {"type": "integer"},
            "upright_rad": {"type": "number", "description": "the upright band's |θ| bound"}}},
        "NodeList": {"type": "object", "required": ["nodes"], "properties": {
            "nodes": {"type": "array", "items": _ref("Node")},
            "live": {"type": "boolean",
                     "description": "the dashboard is connected to the broker"}}},
        "Broker": {"type": "object", "properties": {
            "url": {"type": "string", "nullable": True},
            "host": {"type": "string", "nullable": True},
            "port": {"type": "integer", "nullable": True}, "username": {"type": "string"},
            "tls": {"type": "boolean", "description": "mqtts: verify the broker's certificate"},
            "ca_certificate": {"type": "string", "nullable": True,
                               "description": "PEM of the CA that signed it (for --cafile)"},
            "topic_filter": {"type": "string"}, "credentials_available": {"type": "boolean"},
            "password": {"type": "string", "description": "only in the credentials response"}}},
        "Me": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "is_admin": {"type": "boolean"},
            "max_running": {"type": "integer"}, "broker": _ref("Broker")}},
        "TokenRequest": {"type": "object", "required": ["username", "password"], "properties": {
            "username": {"type": "string"}, "password": {"type": "string"},
            "name": {"type": "string", "maxLength": 64}}},
        "Token": {"type": "object", "required": ["token", "user", "id", "expires_at"],
                  "properties": {
            "token": {"type": "string", "description": "the secret (shown this once)"},
            "user": {"type": "string"}, "id": {"type": "integer"},
            "expires_at": {"type": "number", "description": "s since the epoch"}}},
        "TokenInfo": {"type": "object", "required": ["id", "name", "state", "created_at"],
                      "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
            "created_at": {"type": "number", "description": "s since the epoch"},
            "expires_at": {"type": "number", "nullable": True},
            "last_used_at": {"type": "number", "nullable": True},
            "revoked_at": {"type": "number", "nullable": True},
            "current": {"type": "boolean", "description": "the token of this request"}}},
        "TokenList": {"type": "object", "required": ["tokens"], "properties": {
            "tokens": {"type": "array", "items": _ref("TokenInfo")}}},
    }
    jid = _job_id_param()
    node_id = {"name": "node_id", "in": "path", "required": True, "schema": _ID,
               "description": "node id"}
    paths: dict[str, Any] = {
        "/tokens": {
            "post": {"operationId": "createToken", "security": [], "tags": ["account"],
                     "summary": "Exchange user name and password for an API token (raas login); "
                                "throttled per user name and per address",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": _ref("TokenRequest")}}},
                     "responses": {"201": _json(_ref("Token"), "the new token (shown once)"),
                                   **_errors(400, 401, 413, 415, 429)}},
            "get": {"operationId": "listTokens", "tags": ["account"],
                    "summary": "Your API tokens: active, expired and revoked (never their values)",
                    "responses": {"200": _json(_ref("TokenList"), "the tokens"),
                                  **_errors(401)}}},
        "/tokens/{token_id}": {"delete": {
            "operationId": "revokeToken", "tags": ["account"],
            "parameters": [{"name": "token_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0}}],
            "summary": "Revoke one of your API tokens (using it is refused from then on)",
            "responses": {"200": _json(_ref("TokenInfo"), "the revoked token"),
                          **_errors(401, 404)}}},
        "/me": {"get": {
            "operationId": "getMe", "tags": ["account"], "summary": "The logged-in user",
            "responses": {"200": _json(_ref("Me"), "the user"), **_errors(401)}}},
        "/me/broker-credentials": {"post": {
            "operationId": "issueBrokerCredentials", "tags": ["account"],
            "summary": "Create or refresh your read-only login to your job topics on the broker",
            "responses": {"200": _json(_ref("Broker"), "address, user name, password"),
                          **_errors(401, 503)}}},
        "/jobs": {
            "get": {"operationId": "listJobs", "tags": ["jobs"],
                    "summary": "The runs table: your jobs (admins: everyone's), sorted, "
                               "filtered, searched and paginated",
                    "parameters": [
                        {"name": "state", "in": "query", "schema": {"type": "string",
                                                                    "enum": _STATES}},
                        {"name": "limit", "in": "query", "description": "= per_page", "schema": {
                            "type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                        {"name": "offset", "in": "query", "schema": {
                            "type": "integer", "minimum": 0, "default": 0},
                         "description": "jobs to skip (when no page is given)"},
                        *openapi_runs.list_parameters()],
                    "responses": {"200": _json(_ref("JobList"), "one page of jobs"),
                                  **_errors(400, 401, 403)}},
            "post": {"operationId": "submitJob", "tags": ["jobs"],
                     "summary": "Submit a git repository (JSON) or an archive (multipart)",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref("GitSubmission")},
                         "multipart/form-data": {"schema": _ref("ArchiveSubmission")}}},
                     "responses": {"201": _json(_ref("Job"), "the queued job"),
                                   **_errors(400, 401, 413, 415)}}},
        "/jobs/{job_id}": {"get": {
            "operationId": "getJob", "tags": ["jobs"], "parameters": [jid],
            "summary": "One job, with its result summary and live progress",
            "responses": {"200": _json(_ref("Job"), "the job"), **_errors(401, 403, 404)}}},
        "/jobs/{job_id}/events": {"get": {
            "operationId": "getJobEvents", "tags": ["jobs"], "parameters": [jid],
            "summary": "The job's event timeline (queued, assigned, started, requeues with their "
                       "reason, finished) and live facts",
            "responses": {"200": _json(_ref("JobTimeline"), "timeline and facts"),
                          **_errors(400, 401, 403, 404)}}},
        "/jobs/{job_id}/cancel": {"post": {
            "operationId": "cancelJob", "tags": ["jobs"], "parameters": [jid],
            "summary": "Cancel a queued or running job",
            "responses": {"202": _json(_ref("Job"), "cancel accepted (running jobs stop shortly)"),
                          **_errors(401, 403, 404, 409)}}},
        "/jobs/{job_id}/results": {"get": {
            "operationId": "listResults", "tags": ["results"], "parameters": [jid],
            "summary": "Files of the job's result bundle (empty until it ends)",
            "responses": {"200": _json(_ref("ResultList"), "the files"),
                          **_errors(401, 403, 404)}}},
        "/jobs/{job_id}/telemetry": {"get": {
            "operationId": "getTelemetry", "tags": ["results"],
            "parameters": [jid, {
                "name": "columns", "in": "query", "schema": {"type": "string"},
                "description": "comma-separated subset of theta, theta_dot, u_desired, "
                               "u_applied, reward (default: all; t always comes along)"}, {
                "name": "max_points", "in": "query",
                "schema": {"type": "integer", "minimum": 16, "maximum": 50000, "default": 4000},
                "description": "rows at most; longer records keep each bucket's min and max"}],
            "summary": "A finished job's telemetry as chart columns (min/max-decimated)",
            "responses": {"200": _json(_ref("Telemetry"), "the columns and markers"),
                          **_errors(400, 401, 403, 404, 409, 422, 503)}}},
        "/jobs/{job_id}/results/{name}": {"get": {
            "operationId": "getResult", "tags": ["results"],
            "parameters": [jid, {"name": "name", "in": "path", "required": True,
                                 "schema": {"type": "string"}, "description":
                                 "summary.json, telemetry.csv, stdout.log or plot.png"}],
            "summary": "Download one result file",
            "responses": {"200": {"description": "the file", "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors(401, 403, 404)}}},
        "/nodes": {"get": {
            "operationId": "listNodes", "tags": ["fleet"],
            "summary": "Every node: live state, last seen, run hours, drain, maintenance and "
                       "self-tests (newest first)",
            "responses": {"200": _json(_ref("NodeList"), "the fleet"), **_errors(401)}}},
        **{f"/nodes/{{node_id}}/{action}": {"post": {
            "operationId": f"{action}Node", "tags": ["fleet"], "parameters": [node_id],
            "summary": summary,
            "responses": {"200": _json(_ref("Node"), "the node"), **_errors(401, 403, 404)}}}
           for action, summary in (
               ("drain", "Drain a node (admins): it finishes its job and gets no new one"),
               ("resume", "Resume a drained node (admins): it gets jobs again"))},
        "/fleet/keys": {"get": {
            "operationId": "getFleetKeys", "tags": ["fleet"],
            "summary": "The fleet's Ed25519 public keys that sign result bundles (raas verify)",
            "responses": {"200": _json(_ref("FleetKeys"), "keys by node id"), **_errors(401)}}},
        "/fleet/keys/{node_id}/reset": {"post": {
            "operationId": "resetFleetKey", "tags": ["fleet"], "parameters": [node_id],
            "summary": "Re-enroll a node's key (admins): the one it announces now, or the next",
            "responses": {"200": _json(_ref("FleetKeyReset"), "the node's key now"),
                          **_errors(401, 403, 404)}}},
        "/openapi.json": {"get": {
            "operationId": "getOpenApi", "security": [], "tags": ["meta"],
            "summary": "This document",
            "responses": {"200": _json({"type": "object"}, "the OpenAPI document")}}},
    }
    schemas.update(openapi_webhooks.SCHEMAS)
    schemas.update(openapi_timeline.SCHEMAS)
    paths.update(openapi_webhooks.PATHS)
    schemas.update(openapi_scaling.SCHEMAS)
    paths.update(openapi_scaling.PATHS)
    return {
        "openapi": "3.0.3",
        "info": {"title": "RaaS-MQTT dashboard API", "version": __version__, "description":
                 "Submit controllers, follow jobs, download results. Authenticate with "
                 "`Authorization: Bearer <token>` (get one with `raas login` or on the account "
                 "page); tokens expire, and `DELETE /tokens/{id}` revokes one. Errors are "
                 "`{error, reason}` with a 4xx status; JSON bodies nested deeper than the "
                 "server's limit are 400. Live updates: "
                 "`GET /stream?job=<id>` (server-sent events: state, telemetry, log)."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": schemas, "responses": responses},
        "paths": paths,
    }
