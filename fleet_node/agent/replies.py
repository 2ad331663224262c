"""Requests the agent waits on: versioned job updates resent until answered, and the self-test.

Both are answered from paho's thread (:meth:`UpdateChannel.on_reply`, :meth:`SelfTest.on_reply`);
the waiting thread is the job thread. A stopping agent gives up what is not worth finishing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from fleet_node.agent.job import ActiveJob, RunnerSlot
from fleet_node.agent.motor_view import MotorView
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import (JobState, JobUpdate, JobUpdateReply, MotorStatus,
                                    NodeSelfTest, SelfTestReply, SelfTestRequest, TopicKind)

log = logging.getLogger(__name__)

SendCentral = Callable[[str, protocol.Message], Any]
"""Sends a message on a topic of the central broker (QoS and retain from the topic table)."""
PublishLocal = Callable[[TopicKind, protocol.Message | None], Any]
"""Publishes a message on this node's topic of ``kind`` on the local broker (None clears the
topic's retained message)."""


class Waiter:
    """One pending request, answered from a paho callback.

    Args:
        expected_version: a job update's version; an accepted reply must go past it.
    """

    def __init__(self, expected_version: int = 0) -> None:
        self.expected_version = expected_version
        self.event = threading.Event()
        self.reply: Any = None

    def answer(self, reply: Any) -> None:
        """Hand over the reply and wake the waiter."""
        self.reply = reply
        self.event.set()


def wait_for(event: threading.Event, timeout_s: float, stopping: threading.Event | None) -> bool:
    """Wait for ``event`` up to ``timeout_s`` [s].

    Args:
        stopping: when given, return False as soon as it is set (nothing worth finishing waits).

    Returns:
        Whether ``event`` is set.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return event.is_set()
        if event.wait(min(remaining, 0.1) if stopping is not None else remaining):
            return True
        if stopping is not None and stopping.is_set():
            return False


class UpdateChannel:
    """Versioned job updates to the dispatcher, each resent every ``retry_s`` until answered.

    Args:
        send: sends on the central broker (a no-op while there is no connection).
        node_id: this node.
        retry_s: resend an unanswered update after this long [s].
        stopping: set when the agent stops: an unanswered ``running`` is given up at once, any
            other update gets 5 s more.
        clock: wall clock [s since the epoch] for timestamps.
    """

    def __init__(self, send: SendCentral, node_id: str, retry_s: float,
                 stopping: threading.Event, clock: Callable[[], float]) -> None:
        self._send = send
        self.node_id = node_id
        self.retry_s = retry_s
        self._stopping = stopping
        self._clock = clock
        self._waiters: dict[tuple[str, int], Waiter] = {}

    def update(self, job: ActiveJob, status: JobState, details: dict[str, Any],
               timeout_s: float | None) -> JobUpdateReply | None:
        """Send a versioned update and wait for its answer, resending every ``retry_s``.

        Returns:
            The reply (``accepted`` tells which topic it came on), or None after ``timeout_s``
            [s] (None = until answered or the agent stops). An accepted reply advances
            ``job.version``; a rejected one stops the job as ``abandoned``.
        """
        a = job.assignment
        waiter = Waiter(job.version)
        self._waiters[job.key] = waiter
        msg = JobUpdate(job_id=a.job_id, execution=a.execution, expected_version=job.version,
                        status=status, ts=self._clock(), details=details)
        name = protocol.topic(TopicKind.NODE_JOB_UPDATE, node=self.node_id, job=a.job_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        running = status is JobState.RUNNING
        try:
            while True:
                self._send(name, msg)
                if wait_for(waiter.event, self.retry_s, self._stopping if running else None):
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline or (
                        running and self._stopping.is_set()):
                    return None
                if deadline is None and self._stopping.is_set():
                    deadline = now + 5.0
                log.info("job %s: update %s unanswered; resending", a.job_id, status.value)
        finally:
            self._waiters.pop(job.key, None)
        reply: JobUpdateReply = waiter.reply
        if reply.accepted:
            job.version = reply.version
        else:
            job.stop("abandoned", f"update {status.value} rejected: {reply.reason}")
        return reply

    def on_reply(self, reply: JobUpdateReply, accepted: bool) -> None:
        """A reply on the ``accepted`` or ``rejected`` topic (paho's thread)."""
        waiter = self._waiters.get((reply.job_id, reply.execution))
        if waiter is None:
            return
        # An accepted reply must move the version past what we sent: older ones are duplicates.
        if accepted and reply.version <= waiter.expected_version:
            return
        waiter.answer(dataclasses.replace(reply, accepted=accepted))


@dataclass(frozen=True)
class Verdict:
    """Whether the node may take jobs.

    Attributes:
        ok: the self-test passed (or is disabled).
        reason: why not, one line.
        retry: a platform cause (motor node or Docker missing): retry by itself; otherwise wait
            for clear_maintenance.
        stage: the last stage reached: ``motor``, ``runner``, ``job_path`` or ``pendulum``.
        details: the motor node's measurements (``max_error_rad``, ``rms_error_rad``, ...).
    """

    ok: bool
    reason: str = ""
    retry: bool = False
    stage: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def result(self, ts: float, duration_s: float) -> NodeSelfTest:
        """This verdict as the node reports it (ended at ``ts`` [s since the epoch], after
        ``duration_s`` [s])."""
        return NodeSelfTest(ok=self.ok, ts=ts, duration_s=round(duration_s, 3), stage=self.stage,
                            reason=self.reason or None,
                            max_error_rad=_finite(self.details.get("max_error_rad")),
                            rms_error_rad=_finite(self.details.get("rms_error_rad")),
                            details=self.details)


def _finite(value: Any) -> float | None:
    """A measurement as a float, or None when it is missing or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class SelfTest:
    """Asks the motor node for its self-test on the local broker and waits for the verdict.

    Args:
        publish_local: publishes on the local broker.
        motor: the motor node's state.
        runners: the job runner (a node without one fails the self-test).
        enabled: run the motor node's self-test at all (RAAS_AGENT_SELFTEST).
        timeout_s: longest wait for the verdict [s].
        stopping: set when the agent stops (the wait is given up).
        clock: wall clock [s since the epoch] for timestamps.
        job_path: runs first when enabled: drives the env as a job would and returns why it
            could not, or None (:meth:`fleet_node.agent.jobpath.JobPathCheck.run`).
        report: gets every result when enabled (the fleet's self-test history).
    """

    def __init__(self, publish_local: PublishLocal, motor: MotorView, runners: RunnerSlot, *,
                 enabled: bool, timeout_s: float, stopping: threading.Event,
                 clock: Callable[[], float],
                 job_path: Callable[[], str | None] | None = None,
                 report: Callable[[NodeSelfTest], Any] | None = None) -> None:
        self._publish_local = publish_local
        self._motor = motor
        self._runners = runners
        self._job_path = job_path
        self._report = report
        self.enabled = enabled
        self.timeout_s = timeout_s
        self._stopping = stopping
        self._clock = clock
        self._waiters: dict[str, Waiter] = {}

    def run(self) -> Verdict:
        """Check that the node can take a job: motor node present, runner, a job's path (reset
        and steps through a job login), then the pendulum self-test; report the result."""
        started = time.monotonic()
        verdict = self._check()
        if self.enabled and self._report is not None:
            self._report(verdict.result(self._clock(), time.monotonic() - started))
        return verdict

    def _check(self) -> Verdict:
        motor = self._motor.state
        if motor is not None and motor.state is MotorStatus.LOST:
            return Verdict(False, "the motor node is not running", retry=True, stage="motor")
        if not self.enabled:
            return Verdict(True)
        if self._runners.get() is None:
            return Verdict(False, "no job runner: the Docker engine is unreachable", retry=True,
                           stage="runner")
        failure = self._job_path() if self._job_path is not None else None
        if failure is not None:  # a platform cause: retried, and at once when the motor returns
            return Verdict(False, failure[:300], retry=True, stage="job_path")
        request = SelfTestRequest(uuid.uuid4().hex[:16], self._clock())
        waiter = Waiter()
        self._waiters[request.request_id] = waiter
        try:
            self._publish_local(TopicKind.ENV_SELFTEST, request)
            if not wait_for(waiter.event, self.timeout_s, self._stopping):
                return Verdict(False, "the motor node did not answer the self-test", retry=True,
                               stage="pendulum")
        finally:
            self._waiters.pop(request.request_id, None)
        reply: SelfTestReply = waiter.reply
        if reply.ok:
            return Verdict(True, stage="pendulum", details=reply.details)
        why = reply.details.get("error") or reply.details.get("reason") or "no reason given"
        return Verdict(False, f"self-test failed: {str(why)[:300]}", stage="pendulum",
                       details=reply.details)

    def on_reply(self, reply: SelfTestReply) -> None:
        """The motor node's answer (paho's thread)."""
        waiter = self._waiters.get(reply.request_id)
        if waiter is not None:
            waiter.answer(reply)
