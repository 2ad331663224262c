"""The life of one job execution on the node, from ``running`` to the final update.

::

    running? ─rejected→ (abandon, stay idle)
       │accepted
    fetch code → job credentials + JobBinding → run container (log streamed)
         → unbind, delete credentials, e-stop, clear env state → result bundle → upload → report

The agent runs :meth:`JobPipeline.claim` then :meth:`JobPipeline.execute` on its job thread and
handles the node's status around them (busy, then resetting → self-test).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from broker_config.provision import create_job_client, delete_job_client
from fleet_node import bundle
from fleet_node.agent.job import ActiveJob, Outcome, PlatformFault, RunnerSlot
from fleet_node.agent.motor_view import MotorView
from fleet_node.agent.recovery import CrashRecord
from fleet_node.agent.replies import PublishLocal, SendCentral, UpdateChannel
from fleet_node.config import AgentConfig
from fleet_node.joblog import LogStreamer
from fleet_node.node_key import NodeKey
from fleet_node.sim_report import BundleExtra, sim_vs_real_extra
from fleet_node.source import (FetchLimits, SourceRejected, SourceUnavailable, describe_source,
                               fetch_source)
from gym_raas_mqtt import protocol, results
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.protocol import EStop, JobBinding, JobState, TopicKind
from raas_platform.submission import check_args, check_env

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """Internal: the job was asked to stop before its container started."""


@dataclasses.dataclass(frozen=True)
class _Results:
    """Where the bundle went and what it says; the outcome may have turned into ``error``."""

    outcome: Outcome
    key: str | None = None
    summary: dict[str, Any] | None = None


class JobPipeline:
    """Carries one job execution through fetch, bind, run, unbind, bundle, upload and report.

    Args:
        config: the agent's settings (limits, folders, retries).
        runners: the job runner.
        store: object store of uploaded archives and result bundles.
        updates: job updates to the dispatcher.
        publish_local: publishes on the node's local broker (job binding, e-stop).
        send_central: sends on the central broker (live job log chunks).
        motor: the motor node's state.
        crash: bookkeeping of what a crash would leave behind.
        local_admin: the agent's account on the local broker (creates job accounts).
        stopping: set when the agent stops.
        clock: wall clock [s since the epoch] for timestamps.
        image_digest: the runner image's ID, for bundles of jobs whose run did not tell it.
        key: the node's signing key (None: bundles are not signed).
    """

    def __init__(self, config: AgentConfig, *, runners: RunnerSlot, store: Any,
                 updates: UpdateChannel, publish_local: PublishLocal, send_central: SendCentral,
                 motor: MotorView, crash: CrashRecord, local_admin: BrokerAddress,
                 stopping: threading.Event, clock: Callable[[], float],
                 image_digest: str | None = None, key: NodeKey | None = None) -> None:
        self.config = config
        self.node_id = config.node_id
        self.runners = runners
        self.store = store
        self.updates = updates
        self._publish_local = publish_local
        self._send_central = send_central
        self.motor = motor
        self.crash = crash
        self.local_admin = local_admin
        self._stopping = stopping
        self._clock = clock
        self.image_digest = image_digest
        self.key = key

    def claim(self, job: ActiveJob) -> bool:
        """Tell the dispatcher the job is ``running``; True when it accepted within
        ``start_timeout_s`` (then :attr:`ActiveJob.started_at` is set)."""
        reply = self.updates.update(job, JobState.RUNNING, {},
                                    timeout_s=self.config.start_timeout_s)
        if reply is None or not reply.accepted:
            log.warning("job %s#%d not started: %s", job.id, job.assignment.execution,
                        reply.reason if reply else "no answer from the dispatcher")
            return False
        job.started_at = self._clock()
        return True

    def execute(self, job: ActiveJob) -> Outcome:
        """Run a claimed job to its end: results uploaded and reported, files cleaned up.

        An abandoned job is cleaned up without results or report. Returns the outcome (never
        raises for the job's sake).
        """
        outcome = self._run_job(job)
        if job.stop_kind == "abandoned":
            log.warning("job %s abandoned: %s", job.id, job.stop_reason)
        else:
            saved = self._save_results(job, outcome)
            self._report(job, saved)
            outcome = saved.outcome
        self._cleanup(job)
        return outcome

    # ------------------------------------------------------------------------------ the steps
    def _run_job(self, job: ActiveJob) -> Outcome:
        """Fetch, bind, run; always unbind. Returns the outcome (never raises for the job)."""
        a = job.assignment
        job.workdir = Path(self.config.data_dir) / "jobs" / f"{a.job_id}-{a.execution}"
        shutil.rmtree(job.workdir, ignore_errors=True)
        job.workdir.mkdir(parents=True)
        self.crash.remember(job)
        log_topic = protocol.topic(TopicKind.NODE_JOB_LOG, node=self.node_id, job=a.job_id)
        job.logs = LogStreamer(a.job_id, job.workdir / results.STDOUT_FILE,
                               lambda chunk: self._send_central(log_topic, chunk),
                               flush_s=self.config.log_flush_s,
                               max_lines=self.config.log_chunk_lines, clock=self._clock)
        run = None
        try:
            job.logs.system(f"job {a.job_id} execution {a.execution} on node {self.node_id}")
            code = self._fetch(job)
            if job.stop_event.is_set():
                raise _Stopped
            username, password = self._bind(job)
            run = self._run(job, code, username, password)
        except SourceRejected as e:
            return self._log_outcome(job, Outcome(JobState.FAILED, str(e)))
        except (SourceUnavailable, PlatformFault) as e:
            return self._log_outcome(job, Outcome(JobState.ERROR, str(e)))
        except _Stopped:
            return self._log_outcome(job, job.stopped_outcome())
        finally:
            self._unbind(job)
        if job.stop_kind is not None:
            return self._log_outcome(job, dataclasses.replace(job.stopped_outcome(), run=run))
        return self._log_outcome(job, Outcome(run.state, run.reason, run))

    def _log_outcome(self, job: ActiveJob, outcome: Outcome) -> Outcome:
        log.info("job %s#%d: %s%s", job.id, job.assignment.execution, outcome.state.value,
                 f" ({outcome.reason})" if outcome.reason else "")
        if job.logs is not None:
            job.logs.system(f"{outcome.state.value}" + (f": {outcome.reason}"
                                                         if outcome.reason else ""))
        return outcome

    def _fetch(self, job: ActiveJob) -> Path:
        c = self.config
        limits = FetchLimits(max_bytes=c.clone_max_bytes, max_files=c.clone_max_files,
                             timeout_s=c.clone_timeout_s, allowed_schemes=c.clone_schemes)
        src = job.assignment.source
        assert job.workdir is not None and job.logs is not None
        job.logs.system(f"fetching {describe_source(src)}")
        fetched = fetch_source(src, job.workdir / "code", limits, self.store)
        job.commit_sha = fetched.commit_sha
        job.logs.system(f"code ready: {fetched.files} files, {fetched.size_bytes} bytes"
                        + (f", commit {fetched.commit_sha}" if fetched.commit_sha else ""))
        return fetched.path

    def _bind(self, job: ActiveJob) -> tuple[str, str]:
        """Create the job's local broker account and bind the motor node's recording to it."""
        if not self.motor.running:
            raise PlatformFault("the motor node is not running")
        try:
            username, password = create_job_client(self.local_admin, self.node_id, job.id)
        except RaasError as e:
            raise PlatformFault(f"cannot create the job's broker account: {e}") from e
        job.job_client = username
        self.crash.remember(job)
        self.telemetry_path(job).unlink(missing_ok=True)  # the motor appends: start afresh
        self._publish_local(TopicKind.ENV_JOB, JobBinding(self._clock(), job.id,
                                                          job.assignment.owner))
        return username, password

    def _run(self, job: ActiveJob, code: Path, username: str, password: str) -> Any:
        runner = self.runners.get()
        if runner is None:
            raise PlatformFault("no job runner: the Docker engine is unreachable")
        socket_path = self.config.socket_path
        if socket_path is None:
            raise PlatformFault("RAAS_LOCAL_SOCKET is not set: containers cannot reach the "
                                "local broker")
        a = job.assignment
        args = check_args(list(a.args))  # the submission's checks, again: never trust the wire
        env = check_env(a.env) | {
            "RAAS_NODE_ID": self.node_id, "RAAS_MQTT_USERNAME": username,
            "RAAS_MQTT_PASSWORD": password, "RAAS_OWNER": a.owner, "PYTHONUNBUFFERED": "1"}
        assert job.logs is not None
        argv = " ".join(shlex.quote(x) for x in ("run.py", *args))
        names = f"; environment {', '.join(a.env)}" if a.env else ""  # names only: may be secret
        job.logs.system(f"running {argv} (time limit {a.time_limit_s:g} s{names})")
        try:
            return runner.run_job(job.id, code.resolve(), env, socket_path.resolve(),
                                  a.time_limit_s, job.logs.add, job.stop_event, args=args)
        except RaasError as e:  # RunnerError: the runner refused its arguments
            raise PlatformFault(f"runner: {e}") from e

    def _unbind(self, job: ActiveJob) -> None:
        """Unbind the motor's recording (it forgets the job's episodes), delete the job's account,
        stop the motor, clear the env state the job left retained (its own, its will's or a
        forged one)."""
        self._publish_local(TopicKind.ENV_JOB, JobBinding(self._clock(), None, None))
        if job.job_client is not None:
            try:
                delete_job_client(self.local_admin, job.job_client)
                job.job_client = None
            except RaasError as e:
                log.error("job %s: could not delete account %s: %s", job.id, job.job_client, e)
        self._publish_local(TopicKind.ENV_ESTOP, EStop("job ended", self._clock()))
        self._publish_local(TopicKind.ENV_STATE, None)  # after the account: nobody re-sets it
        # The motor node closes the telemetry file when it sees the unbinding: wait for it.
        self.motor.wait_unbound(job.id, self.config.motor_wait_s)

    def _save_results(self, job: ActiveJob, outcome: Outcome) -> _Results:
        """Build the bundle and upload it; an upload failure turns the outcome into error."""
        a = job.assignment
        assert job.workdir is not None
        if job.logs is not None:
            job.logs.close()
        run = outcome.run
        motor = self.motor.state
        try:
            summary = bundle.build_bundle(
                job.workdir / "bundle", telemetry_path=self.telemetry_path(job),
                stdout_path=job.workdir / results.STDOUT_FILE,
                job_id=a.job_id, owner=a.owner, node_id=self.node_id, execution=a.execution,
                state=outcome.state.value, reason=outcome.reason, commit_sha=job.commit_sha,
                image_digest=getattr(run, "image_id", None) or self.image_digest,
                calibration_id=motor.calibration_id if motor else None,
                calibration_sha256=motor.calibration_sha256 if motor else None,
                time_limit_s=getattr(run, "time_limit_s", None) or a.time_limit_s,
                duration_s=getattr(run, "duration_s", None), started_at=job.started_at,
                finished_at=self._clock(), exit_code=getattr(run, "exit_code", None),
                output_truncated=bool(getattr(run, "truncated", False)),
                extra={"name": a.name, "tags": list(a.tags), "args": list(a.args)},
                extras=[self._sim_vs_real(motor)])
            if self.key is not None:
                self.key.sign_bundle(job.workdir / "bundle", self.node_id, self._clock)
        except (OSError, RaasError) as e:
            log.exception("job %s: result bundle not built", a.job_id)
            return _Results(Outcome(JobState.ERROR, f"result bundle not built: {e}", run))
        for attempt in range(1, self.config.upload_attempts + 1):
            try:
                key = bundle.upload_bundle(self.store, a.job_id, job.workdir / "bundle")
                return _Results(outcome, key, summary)
            except RaasError as e:
                log.warning("job %s: upload attempt %d failed: %s", a.job_id, attempt, e)
                if attempt < self.config.upload_attempts:
                    time.sleep(min(2.0 ** attempt, 10.0))
                last = e
        return _Results(Outcome(JobState.ERROR, f"result upload failed: {last}", run),
                        summary=summary)

    def _sim_vs_real(self, motor: Any) -> BundleExtra:
        """The bundle hook of the sim-vs-real report, with the calibration the motor node ran
        (the configured file, if its SHA-256 is the one the motor node reported)."""
        try:
            params = load_calibration(self.config.calibration_file)
        except RaasError as e:
            return sim_vs_real_extra(None, why_not=f"calibration not readable: {e}")
        reported = motor.calibration_sha256 if motor else None
        if reported and reported != params.calibration_sha256:
            return sim_vs_real_extra(None, why_not=(
                f"the motor node ran calibration {motor.calibration_id} ({reported[:12]}), the "
                f"agent's file is {params.calibration_id} ({params.calibration_sha256[:12]})"))
        return sim_vs_real_extra(params)

    def _report(self, job: ActiveJob, saved: _Results) -> None:
        outcome = saved.outcome
        compact = {k: v for k, v in (saved.summary or {}).items() if k != "per_episode"}
        details = {"reason": outcome.reason, "commit_sha": job.commit_sha,
                   "result_key": saved.key, "summary": compact or None}
        job.reported = True
        timeout = 10.0 if self._stopping.is_set() else None
        reply = self.updates.update(job, outcome.state, {k: v for k, v in details.items()
                                                         if v is not None}, timeout_s=timeout)
        if reply is None:
            log.error("job %s: final update %s not answered", job.id, outcome.state.value)
        elif not reply.accepted:
            log.warning("job %s: final update %s rejected: %s", job.id, outcome.state.value,
                        reply.reason)

    def _cleanup(self, job: ActiveJob) -> None:
        if job.logs is not None:
            job.logs.close()
        self.telemetry_path(job).unlink(missing_ok=True)  # uploaded, or of no use
        if job.workdir is not None and not self.config.keep_workdirs:
            shutil.rmtree(job.workdir, ignore_errors=True)
        self.crash.forget()

    def telemetry_path(self, job: ActiveJob) -> Path:
        """Where the motor node records this job (fleet_node.motor.telemetry.telemetry_path)."""
        return Path(self.config.data_dir) / "telemetry" / f"{job.id}.csv"
