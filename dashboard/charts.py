"""The chart pages' server side: the compare view of several runs and the constants charts draw.

``/compare?jobs=ID1,ID2,...`` is a shareable address: it names 2 to :data:`MAX_COMPARE` runs the
viewer may see (their own; an admin's: anyone's). The page lays their summaries side by side;
``static/compare.js`` overlays their telemetry, one chart per quantity and one series per run,
fetched from ``GET /api/v1/jobs/<id>/telemetry``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request

from dashboard import jobs
from dashboard.auth import login_required
from dispatcher.models import Job
from gym_raas_mqtt.results import UPRIGHT_RAD

bp = Blueprint("charts", __name__)
MAX_COMPARE = 8
"""Runs one comparison shows at most (eight colours tell apart)."""
MAX_IDS_CHARS = 1024


@bp.app_context_processor
def chart_constants() -> dict[str, Any]:
    """What every page's chart needs from the platform: the upright threshold (rad)."""
    return {"upright_rad": UPRIGHT_RAD}


def parse_job_ids(raw: str | None) -> list[str]:
    """The job ids of a ``jobs=a,b,c`` query: stripped, repeats dropped, in the order given.

    Aborts with 400 when fewer than two or more than :data:`MAX_COMPARE` remain.
    """
    if not raw:
        abort(400, description="name the runs to compare: /compare?jobs=ID1,ID2 (tick them on "
                               "the jobs page and press Compare)")
    ids = list(dict.fromkeys(i.strip() for i in raw[:MAX_IDS_CHARS].split(",") if i.strip()))
    if len(ids) < 2:
        abort(400, description="a comparison needs at least two different runs")
    if len(ids) > MAX_COMPARE:
        abort(400, description=f"compare at most {MAX_COMPARE} runs at a time ({len(ids)} given)")
    return ids


def run_row(job: Job, index: int) -> dict[str, Any]:
    """One column of the metrics table: the job's identity, metadata and summary figures."""
    s = job.summary if isinstance(job.summary, dict) else {}
    return {
        "id": job.id, "name": job.name, "label": job.name or job.id, "color": index,
        "state": job.state, "tags": job.tags or [], "args": job.args or [],
        "return": s.get("return"), "seconds_upright": s.get("seconds_upright"),
        "steps": s.get("steps"), "episodes": s.get("episodes"),
        "duration_s": s.get("duration_s"), "deadline_misses": s.get("deadline_misses"),
        "node_id": s.get("node_id") or job.node_id,
        "commit_sha": s.get("commit_sha") or job.commit_sha,
        "has_telemetry": bool(s) and not s.get("telemetry_error"),
    }


@bp.get("/compare")
@login_required
def compare_page() -> Any:
    """Several runs side by side: a metrics table and overlaid θ, θ̇, action and reward."""
    runs = [run_row(jobs.load_job(job_id), i)
            for i, job_id in enumerate(parse_job_ids(request.args.get("jobs")))]
    return render_template("compare.html", runs=runs)
