"""A job cannot poison the motor node for later jobs (issue 10, item 2 "Jobs leave nothing behind").

Finding covered: "A job can poison the motor node for later jobs" — a reset with episode id 2**53
was accepted, and every later job on that node failed with 0 steps until the motor node was
restarted; sequence numbers jumping by 10**9 were accepted; a job could name any start state (on
hardware silently replaced by a closed-loop reset); a forged retained ``env/state`` stayed on the
node's broker after the job. Each attempt runs here as a real job — its own job login on the
node-local broker, through the real agent, dispatcher and motor node (sim, lockstep; the user code
runs as a plain subprocess, the Docker runner has its own tests) — and the NEXT job on that node
must run normally, from episode 1. Also: a retained action or reset a job leaves behind is ignored
by the motor node, and the between-jobs self-test drives the env through a job login, so a node a
job cannot use goes to maintenance instead of failing the next user's job.
"""

from __future__ import annotations

import math
import time

import pytest

from broker_config import acl
from broker_config.dynsec import DynSec
from dispatcher import queue as Q
from fleet_node.motor.sim_motor import SimMotor
from gym_raas_mqtt import protocol, results
from gym_raas_mqtt.protocol import JobState, MotorStatus, NodeStatus, TopicKind
from tests.fleet_node.agent import test_agent_jobs
from tests.fleet_node.agent.agent_harness import Recorder, git_repo, make_node, wait_for
from tests.fleet_node.agent.test_agent_jobs import RUN_ENV, finished, submit

pytestmark = pytest.mark.broker
dispatcher = test_agent_jobs.dispatcher  # the agent tests' fixture (test arguments shadow it)

# What every hostile job starts with: its own login (client id = user name, the only one the
# broker allows it), a client on the node's topics, and helpers to send and to wait for answers.
PRELUDE = """\
import math, os, queue, time
from gym_raas_mqtt import protocol
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client
from gym_raas_mqtt.protocol import Action, EnvState, EnvStatus, ResetRequest, TopicKind as K

node, user = os.environ["RAAS_NODE_ID"], os.environ["RAAS_MQTT_USERNAME"]
addr = BrokerAddress.parse(os.environ["RAAS_MQTT_URL"], user, os.environ["RAAS_MQTT_PASSWORD"])
got = queue.Queue()
c = make_client(addr, user)
c.on_message = lambda c, u, m: got.put(protocol.decode(m.topic, m.payload)[1])
connect(c)
c.loop_start()
c.subscribe([(protocol.topic(K.ENV_RESET_REPLY, node=node), 1),
             (protocol.topic(K.ENV_OBS, node=node), 0)])
time.sleep(0.3)

def send(kind, msg, retain=False):
    c.publish(protocol.topic(kind, node=node), msg.to_bytes(), qos=1,
              retain=retain).wait_for_publish(5)

def answer(timeout=2.0):
    try:
        return got.get(timeout=timeout)
    except queue.Empty:
        return None

def reset(episode, start=(math.pi, 0.0)):
    send(K.ENV_RESET, ResetRequest(f"r{episode}", episode, time.time(), start, 5.0))
    return answer(10.0)
"""

HUGE_EPISODE = PRELUDE + """
reply = reset(2**53)
print("huge episode:", "ACCEPTED" if reply.ok else f"refused: {reply.error}")
"""

SEQ_JUMP = PRELUDE + """
assert reset(1).ok
send(K.ENV_ACT, Action(1, 1, 0.0))
assert answer().seq == 1
send(K.ENV_ACT, Action(1, 10**9, 2.0))
obs = answer(1.0)
print("seq jump:", "ANSWERED" if obs is not None else "dropped")
send(K.ENV_ACT, Action(1, 2, 0.0))
print("next step answered:", answer().seq)
"""

UPRIGHT_START = """\
import gymnasium as gym
import gym_raas_mqtt
from gym_raas_mqtt.errors import MotorFault

env = gym.make("RaasPendulum-v0")
try:
    env.reset(options={"initial_state": (0.0, 0.0)})  # upright: impossible on real hardware
    print("upright start: ACCEPTED")
except MotorFault as e:
    print("upright start:", e)
obs, info = env.reset(seed=1)  # the default start (hanging at rest) still works
print("default start: episode", info["episode_id"])
env.close()
"""

FORGED_ENV_STATE = PRELUDE + """
send(K.ENV_STATE, EnvState(EnvStatus.LOST, time.time(), 77), retain=True)
print("forged env state left")
"""

SLEEP_2S = "import time\nprint('working', flush=True)\ntime.sleep(2.0)\n"

RETAINED_COMMANDS = PRELUDE + """
send(K.ENV_RESET, ResetRequest("forged", 5, time.time(), (0.0, 0.0), 5.0), retain=True)
send(K.ENV_ACT, Action(5, 1, 2.0), retain=True)
print("retained reset and action left")
"""


class HardwareLike(SimMotor):
    """A simulated pendulum that, like real hardware, cannot be placed at a state."""

    placeable = False

    def set_state(self, theta: float, theta_dot: float) -> bool:
        return False


@pytest.fixture
def node(broker, tmp_path, uid):
    n = make_node(broker, tmp_path, uid)
    yield n
    n.close()


def run(dispatcher, node, tmp_path, source: str) -> tuple[object, str]:
    """Run ``source`` as a job on ``node`` (idle first); its final record and its output."""
    wait_for(lambda: node.agent.status is NodeStatus.IDLE, 20.0, "the node idle")
    url = git_repo(tmp_path / f"repo-{time.monotonic_ns()}", {"run.py": source})
    job = finished(submit(dispatcher, url), 60.0)
    stdout = node.store.get_bytes(f"{job.result_key}stdout.log").decode()
    return job, stdout


def next_job_runs_normally(dispatcher, node, tmp_path) -> None:
    """The next user's job: 60 steps of the env, its first episode numbered 1."""
    job, stdout = run(dispatcher, node, tmp_path, RUN_ENV)
    assert job.job_state is JobState.SUCCEEDED, f"{job.reason}\n{stdout[-2000:]}"
    tel = results.load_telemetry(node.store, job_id=job.id)
    assert len(tel) == 60 and set(tel.episode_id.tolist()) == {1}


def retained(node, kind: TopicKind) -> list:
    """The retained messages on this node's topic of ``kind`` (as the broker's admin), once the
    node is idle again: its check between jobs drives the env too, then clears what it left."""
    wait_for(lambda: node.agent.status is NodeStatus.IDLE, 30, "the node idle after its check")
    rec = Recorder(node.local.admin_address, protocol.topic(kind, node=node.node_id))
    time.sleep(0.5)
    rec.close()
    return [payload for _, payload, was_retained, _ in rec.messages if was_retained and payload]


def hostile_job(dispatcher, node, tmp_path, source: str, motor=None) -> str:
    """Start the node (motor node on driver ``motor``, agent), run ``source`` as its first job,
    wait until the node is idle again; the job's output."""
    node.start_motor(motor=motor)
    node.start_agent()
    job, stdout = run(dispatcher, node, tmp_path, source)
    assert job.job_state is JobState.SUCCEEDED, stdout
    wait_for(lambda: node.agent.status is NodeStatus.IDLE, 20.0, "the node idle")
    return stdout


def test_huge_episode_id_is_refused_and_the_next_job_runs(dispatcher, node, tmp_path):
    stdout = hostile_job(dispatcher, node, tmp_path, HUGE_EPISODE)
    next_job_runs_normally(dispatcher, node, tmp_path)  # before: 0 steps, reset never answered
    assert "huge episode: refused: episode id 9007199254740992 is more than 1000 ahead" in stdout


def test_sequence_number_jump_is_dropped_and_the_next_job_runs(dispatcher, node, tmp_path):
    stdout = hostile_job(dispatcher, node, tmp_path, SEQ_JUMP)
    assert "seq jump: dropped" in stdout and "next step answered: 2" in stdout
    assert node.motor.stats.dropped >= 1  # counted
    next_job_runs_normally(dispatcher, node, tmp_path)


def test_start_state_is_refused_on_hardware_and_the_next_job_runs(dispatcher, node, tmp_path):
    stdout = hostile_job(dispatcher, node, tmp_path, UPRIGHT_START, motor=HardwareLike())
    assert "upright start: reset failed: this node's pendulum is real and cannot be placed" in stdout
    assert "default start: episode 2" in stdout
    next_job_runs_normally(dispatcher, node, tmp_path)


def test_forged_retained_env_state_is_cleared_after_the_job(dispatcher, node, tmp_path):
    assert "forged env state left" in hostile_job(dispatcher, node, tmp_path, FORGED_ENV_STATE)
    assert retained(node, TopicKind.ENV_STATE) == []
    next_job_runs_normally(dispatcher, node, tmp_path)
    assert retained(node, TopicKind.ENV_STATE) == []  # nor what a normal job's env leaves


def test_retained_reset_and_action_are_ignored_by_the_motor_node(dispatcher, node, tmp_path):
    stdout = hostile_job(dispatcher, node, tmp_path, RETAINED_COMMANDS)
    assert "retained reset and action left" in stdout
    # The broker keeps them (it cannot refuse the retain flag), and delivers them again to the
    # motor node whenever it subscribes: after a restart, for instance.
    assert len(retained(node, TopicKind.ENV_RESET)) == 1
    replies = Recorder(node.local.admin_address,
                       protocol.topic(TopicKind.ENV_RESET_REPLY, node=node.node_id))
    try:
        node.motor.close()
        motor = node.start_motor()
        time.sleep(0.5)
        assert motor.episode_id is None and motor.status is MotorStatus.READY
        assert motor.stats.dropped >= 2
        assert not [p for _, p, _, _ in replies.messages if b'"forged"' in p]
    finally:
        replies.close()
    next_job_runs_normally(dispatcher, node, tmp_path)


def test_selftest_drives_the_env_as_a_job_and_a_broken_node_goes_to_maintenance(
        dispatcher, node, tmp_path):
    node.start_motor()
    agent = node.start_agent(selftest_timeout_s=3.0)
    first = submit(dispatcher, git_repo(tmp_path / "first", {"run.py": SLEEP_2S}))
    wait_for(lambda: Q.get_job(first).job_state is JobState.RUNNING, 20.0, "the first job running")
    # While it runs, the node breaks in a way only a job notices: the motor node stops getting
    # actions (its broker role edited by mistake; the broker kicks it, it reconnects without
    # them). Its own self-test still passes.
    act = protocol.topic(TopicKind.ENV_ACT, node=node.node_id)
    with DynSec(node.local.admin_address) as ds:
        ds.ensure_role("motor", [a for a in acl.motor_role(node.node_id) if a[1] != act])
    second = submit(dispatcher, git_repo(tmp_path / "second", {"run.py": RUN_ENV}))
    assert finished(first, 30.0).job_state is JobState.SUCCEEDED
    wait_for(lambda: agent.status is NodeStatus.MAINTENANCE
             and "a job cannot drive the motor node" in (agent.reason or ""), 30.0,
             "maintenance with the reason of the job's path")
    assert "no observation for step 1" in agent.reason
    time.sleep(2.0)  # the next user's job waits instead of failing on the broken node
    assert Q.get_job(second).job_state is JobState.QUEUED
    with DynSec(node.local.admin_address) as ds:  # repaired: the retried check passes
        ds.ensure_role("motor", acl.motor_role(node.node_id))
    job = finished(second, 60.0)
    assert job.job_state is JobState.SUCCEEDED, job.reason
    assert math.isfinite(results.load_summary(node.store, job_id=second)["return"])
