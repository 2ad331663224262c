"""The user's source errors end the job ``failed`` through the real agent and dispatcher, after one
execution: never retried as if the platform had failed (issue 10, item 6).

Finding covered: "An unreachable or nonexistent user repository ends error and is retried three
times, as if it were a platform fault." Before the change this job (a repository whose host name
does not exist, queued without the API's ls-remote check) ended ``error`` after
RAAS_MAX_ATTEMPTS executions.
"""

from __future__ import annotations

import socket

import pytest

from dispatcher import queue as Q
from dispatcher.service import Dispatcher
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from tests.fleet_node.agent.agent_harness import Node
from tests.fleet_node.agent.test_agent_jobs import (  # noqa: F401  (fixtures)
    dispatcher, finished, node)

pytestmark = pytest.mark.broker
HOST = "raas-missing-host.example"  # .example is reserved (RFC 2606): it never resolves


def test_missing_host_fails_once_not_retried(dispatcher: Dispatcher,  # noqa: F811 (fixtures)
                                             node: Node) -> None:  # noqa: F811
    try:
        socket.getaddrinfo(HOST, 443)
    except socket.gaierror as e:
        if e.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver does not answer ({e})")
    node.start_agent(selftest=False, clone_schemes=("https", "ssh"))
    source = JobSource(SourceKind.GIT, url=f"https://{HOST}/me/ctrl.git", ref="main")
    job = finished(Q.enqueue("alice", source, 30.0, limits=dispatcher.limits).id)
    assert job.job_state is JobState.FAILED, job.reason
    assert "does not exist" in job.reason
    assert job.attempts == 1
