"""Server-rendered pages: submit, jobs list, job page, fleet."""

from __future__ import annotations

import shlex
import time
from typing import Any

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   url_for)

from dashboard import fleet, jobs, runs, timeline
from dashboard.auth import login_required
from dashboard.submission import (SubmissionError, archive_source, check_time_limit, git_source,
                                  text_metadata)
from dashboard.submission import submit as submit_job
from dispatcher import queue
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import JobState
from raas_platform.submission.metadata import MAX_ENV_CHARS, MAX_NOTES_CHARS

bp = Blueprint("ui", __name__)
LOG_PREVIEW_BYTES = 64 * 1024  # of stdout.log shown on a finished job's page


@bp.app_template_filter("ts")
def format_ts(value: float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS UTC`` (the page's script shows local time)."""
    if not value:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


@bp.app_template_filter("shell_quote")
def shell_quote(value: str) -> str:
    """One argument as a POSIX shell would need it written (``run.py``'s arguments on a page)."""
    return shlex.quote(value)


@bp.get("/")
def index() -> Any:
    """The jobs list is the home page."""
    return redirect(url_for("ui.jobs_page"))


@bp.route("/submit", methods=["GET", "POST"])
@login_required
def submit_page() -> Any:
    """The submit form (GET) and a submission from it (POST)."""
    limits = current_app.extensions["raas_limits"]
    queue_limits = current_app.extensions["raas_queue_limits"]
    form = {"mode": "git", "url": "", "ref": "", "time_limit_s": "", "name": "", "tags": "",
            "notes": "", "args": "", "env": ""}
    if request.method == "POST":
        form.update({k: request.form.get(k, "")[:2048] for k in form})
        form["notes"] = request.form.get("notes", "")[:MAX_NOTES_CHARS + 1]
        form["env"] = request.form.get("env", "")[:MAX_ENV_CHARS + 1]
        try:
            time_limit = check_time_limit(form["time_limit_s"], queue_limits)
            meta = text_metadata(form)
            if form["mode"] == "archive":
                upload = request.files.get("archive")
                if upload is None or not upload.filename:
                    raise SubmissionError("choose a .tar.gz or .zip file to upload",
                                          field="archive")
                data = upload.stream.read(limits.max_upload_bytes + 1)
                source = archive_source(jobs.store(), g.user.name, upload.filename, data, limits)
            else:
                source = git_source(form["url"], form["ref"])
            job = submit_job(g.user.name, source, time_limit, queue_limits, meta)
        except SubmissionError as e:
            return render_template("submit.html", form=form, error=str(e), field=e.field,
                                   limits=limits, queue_limits=queue_limits), e.status
        except RaasError as e:
            return render_template("submit.html", form=form, error=str(e), field=None,
                                   limits=limits, queue_limits=queue_limits), 400
        flash(f"Job {job.id} submitted.")
        return redirect(url_for("ui.job_page", job_id=job.id))
    return render_template("submit.html", form=form, error=None, field=None, limits=limits,
                           queue_limits=queue_limits)


@bp.get("/jobs")
@login_required
def jobs_page() -> Any:
    """The runs table: the user's jobs (an admin's: everyone's), sorted, filtered, paginated."""
    try:
        query = runs.parse_query(request.args, g.user)
    except runs.RunsQueryError as e:
        abort(e.status, description=str(e))
    page = runs.runs_page(query, g.user)
    return render_template("jobs.html", jobs=jobs.job_views(page.jobs), page=page, query=query,
                           states=[s.value for s in JobState])


@bp.get("/jobs/<job_id>")
@login_required
def job_page(job_id: str) -> Any:
    """One job: state, live chart while it runs, results and log preview once it ended."""
    job = jobs.load_job(job_id)
    if job.id != job_id:  # named by a prefix: show the job's own address
        return redirect(url_for("ui.job_page", job_id=job.id))
    view = jobs.job_view(job, detail=True)
    files = jobs.result_files(job) if JobState(job.state).terminal else []
    log_text, truncated = None, False
    if any(f["name"] == "stdout.log" for f in files):
        data, _ = jobs.result_bytes(job, "stdout.log")
        truncated = len(data) > LOG_PREVIEW_BYTES
        log_text = data[:LOG_PREVIEW_BYTES].decode("utf-8", "replace")
    return render_template("job.html", job=view, files=files, log_text=log_text,
                           log_truncated=truncated, log_limit=LOG_PREVIEW_BYTES,
                           events=timeline.job_timeline(job), facts=view["facts"])


@bp.post("/jobs/<job_id>/cancel")
@login_required
def cancel(job_id: str) -> Any:
    """Cancel a job from its page."""
    job = jobs.load_job(job_id)
    if JobState(job.state).terminal:
        flash(f"Job {job.id} already ended ({job.state}).")
    else:
        try:
            queue.cancel(job.id, g.user.name, limits=current_app.extensions["raas_queue_limits"])
            flash(f"Cancel requested for job {job.id}.")
        except RaasError as e:
            flash(f"Could not cancel: {e}")
    return redirect(url_for("ui.job_page", job_id=job.id))


@bp.get("/fleet")
@login_required
def fleet_page() -> Any:
    """The fleet: every node's state, last self-tests and run hours."""
    return render_template("fleet.html", nodes=fleet.node_views(), live=jobs.hub().connected)


@bp.post("/fleet/<node_id>/<action>")
@login_required
def fleet_action(node_id: str, action: str) -> Any:
    """An operator's drain or resume button on the fleet page (admins)."""
    if action not in ("drain", "resume"):
        abort(404, description=f"no action {action[:40]!r}")
    fleet.set_draining(node_id, action == "drain")
    flash(f"Node {node_id} drains: it finishes its job and takes no new one." if action == "drain"
          else f"Node {node_id} takes jobs again.")
    return redirect(url_for("ui.fleet_page"))
