"""Crash bookkeeping: what a job execution would leave behind, written down and cleaned up at start.

While a job runs, ``<data dir>/agent/current-job.json`` names its local broker account and work
folder (during the between-jobs check, that check's account). If the agent dies, the next start
deletes them and any container of this installation and node left on the engine; the dispatcher
requeues the job itself (the node comes back without it).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from broker_config.provision import delete_job_client
from fleet_node.agent.job import ActiveJob
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress

log = logging.getLogger(__name__)


class CrashRecord:
    """The file naming the running job execution's leftovers.

    Args:
        state_dir: the agent's state folder (exists).
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "current-job.json"

    def remember(self, job: ActiveJob) -> None:
        """Note what a crash would leave behind now (atomically replaced)."""
        self._write({"job_id": job.id, "execution": job.assignment.execution,
                     "job_client": job.job_client,
                     "workdir": str(job.workdir) if job.workdir else None})

    def remember_client(self, username: str) -> None:
        """Note a job login made outside a job execution (the between-jobs check's)."""
        self._write({"job_client": username})

    def _write(self, record: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.path)

    def forget(self) -> None:
        """The job execution is over and cleaned up."""
        self.path.unlink(missing_ok=True)

    def recover(self, *, node_id: str, runner: Any, local_admin: BrokerAddress,
                keep_workdirs: bool) -> None:
        """After a crash: remove the node's job containers, the dead job's account and files.

        Args:
            node_id: this node (only its containers are swept).
            runner: the job runner, if any; its ``sweep(node_id)`` removes containers.
            local_admin: the agent's account on the local broker (deletes job accounts).
            keep_workdirs: keep the work folder (debugging).
        """
        sweep = getattr(runner, "sweep", None)
        if sweep is not None:
            try:
                sweep(node_id)
            except Exception as e:  # noqa: BLE001 - Docker trouble shows up again per job
                log.warning("could not sweep leftover containers: %s", e)
        try:
            left = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            self.forget()
            return
        log.warning("cleaning up after %s, interrupted by a crash",
                    f"job {left['job_id']}" if left.get("job_id") else "the between-jobs check")
        if left.get("job_client"):
            try:
                delete_job_client(local_admin, str(left["job_client"]))
            except RaasError as e:
                log.error("could not delete leftover account %s: %s", left["job_client"], e)
        if left.get("workdir") and not keep_workdirs:
            shutil.rmtree(left["workdir"], ignore_errors=True)
        self.forget()
