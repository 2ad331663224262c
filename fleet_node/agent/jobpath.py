"""The between-jobs check of the path the next job will use: a job's login driving the env.

A node can pass the motor node's own self-test and still fail every job: a motor node that no
longer answers a job client's resets or actions (left so by an earlier job, or by a broker change)
would only show when the next user's job ends with 0 steps. So before the self-test the agent
connects to its local broker **as a job** — a temporary job login, created and deleted exactly like
a real job's, over the socket a job container gets — and drives the env's bus backend in-process:
one reset to the hanging rest (accepted by simulated and real pendulums alike) and a few steps at
zero torque, each of which must come back with an observation. What the check leaves retained
(the env's state) is cleared, as after a job.
"""

from __future__ import annotations

import logging
import math

from broker_config.provision import create_job_client, delete_job_client
from fleet_node.agent.recovery import CrashRecord
from fleet_node.agent.replies import PublishLocal
from fleet_node.config import AgentConfig
from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
from gym_raas_mqtt.errors import BackendError, ConfigError, RaasError
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.protocol import TopicKind

log = logging.getLogger(__name__)

CHECK_JOB_ID = "selftest"
"""The job id the check's login is named after (``job-selftest-<hex>``)."""
CHECK_STEPS = 5
"""Steps at zero torque the check drives after its reset."""


class JobPathCheck:
    """Drives the env as the next job will, through a temporary job login.

    Args:
        config: the agent's settings (node id, the socket handed to jobs, self-test timeout).
        local_admin: the agent's account on the local broker (creates and deletes job logins);
            its URL is used when no socket is configured.
        publish_local: publishes on the local broker (clears the env's retained state).
        crash: notes the temporary login so a crash in the middle does not leave it behind.
    """

    def __init__(self, config: AgentConfig, local_admin: BrokerAddress,
                 publish_local: PublishLocal, crash: CrashRecord) -> None:
        self.node_id = config.node_id
        socket_path = config.socket_path
        self.url = f"unix://{socket_path}" if socket_path is not None else local_admin.url()
        self.timeout_s = config.selftest_timeout_s
        self.local_admin = local_admin
        self._publish_local = publish_local
        self._crash = crash

    def run(self) -> str | None:
        """Create a job login, reset and step the env with it, delete the login.

        Returns:
            Why a job could not use the node (one line), or None when it can.
        """
        try:
            username, password = create_job_client(self.local_admin, self.node_id, CHECK_JOB_ID)
        except RaasError as e:
            return f"cannot create a job login on the local broker: {e}"
        self._crash.remember_client(username)
        try:
            return self._drive(username, password)
        finally:
            try:
                delete_job_client(self.local_admin, username)
            except RaasError as e:
                log.error("could not delete the check's job login %s: %s", username, e)
            self._publish_local(TopicKind.ENV_STATE, None)
            self._crash.forget()

    def _drive(self, username: str, password: str) -> str | None:
        config = BusConfig(mqtt_url=self.url, node_id=self.node_id, username=username,
                           password=password, client_id=username,
                           reset_timeout_s=self.timeout_s)
        try:
            env = BusBackend(config)
        except (BackendError, ConfigError) as e:
            return f"a job cannot reach the motor node: {e}"
        try:
            env.reset((math.pi, 0.0))
            for _ in range(CHECK_STEPS):
                theta, theta_dot, _, info = env.step(0.0)
                if info.get("fault"):
                    return f"the motor node went safe during a job's steps: {info['fault']}"
                if not (math.isfinite(theta) and math.isfinite(theta_dot)):
                    return "the motor node sent a non-finite observation"
        except BackendError as e:  # MotorFault included: a refused or failed reset
            return f"a job cannot drive the motor node: {e}"
        finally:
            env.close()
        return None
