"""The motor node on a real node-local Mosquitto: protocol, safety, reset, telemetry, self-test."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from fleet_node.motor.sim_motor import SimMotor
from fleet_node.motor.telemetry import read_telemetry, telemetry_path
from gym_raas_mqtt import physics, protocol
from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
from gym_raas_mqtt.mqtt import PackedProperties, connect, content_type, make_client
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.protocol import (Action, EnvState, EnvStatus, EStop, JobBinding, MotorStatus,
                                    ResetReply, ResetRequest, SelfTestRequest, TelemetryBatch,
                                    TopicKind)
from motor_fixtures import Probe, local_admin, probe, start_node  # noqa: F401 - fixtures

pytestmark = pytest.mark.broker
K = TopicKind


def bus_env(address, node_id, **kw):
    return BusBackend(BusConfig(mqtt_url=address.url(), node_id=node_id,
                                username=address.username, password=address.password, **kw))


def reset(probe, episode, initial=(math.pi, 0.0), request_id=None, timeout_s=30.0):
    rid = request_id or uuid.uuid4().hex[:12]
    probe.publish(K.ENV_RESET, ResetRequest(rid, episode, time.time(), initial, timeout_s))
    return probe.get(K.ENV_RESET_REPLY, timeout=timeout_s + 5, where=lambda r: r.request_id == rid)


def wait_for(predicate, timeout_s=5.0, poll_s=0.0005):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(poll_s)
    raise AssertionError("condition not met in time")


# ----------------------------------------------------------------------------------- state topic
def test_retained_state_announces_params_and_close_leaves_lost(start_node, probe):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_MOTOR_STATE)
    st = probe.get(K.ENV_MOTOR_STATE)
    assert st.state is MotorStatus.READY and st.rate_hz == 20.0 and st.lockstep
    assert (st.backend, st.calibration_id, st.max_action, st.max_speed) == (
        "sim", DEFAULT_PARAMS.calibration_id, 2.0, 20.0)
    node.close()
    assert probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.state is MotorStatus.LOST).reason


def motor_cli(local_admin, node_id, tmp_path, *args):
    env = {**os.environ, "RAAS_NODE_ID": node_id, "RAAS_LOCAL_MQTT_URL": local_admin.url(),
           "RAAS_MOTOR_MQTT_USERNAME": local_admin.username, "RAAS_DATA_DIR": str(tmp_path)}
    pw = tmp_path / "pw"
    pw.write_text(local_admin.password + "\n")
    env["RAAS_MOTOR_MQTT_PASSWORD_FILE"] = str(pw)
    return subprocess.Popen([sys.executable, "-m", "gym_raas_mqtt.cli", "node", "motor", *args],
                            env=env)


def test_cli_motor_node_stops_cleanly_on_sigterm(local_admin, probe, tmp_path):
    proc = motor_cli(local_admin, probe.node_id, tmp_path, "--backend", "sim", "--rate-hz", "50")
    try:
        probe.subscribe(K.ENV_MOTOR_STATE)
        st = probe.get(K.ENV_MOTOR_STATE, timeout=15, where=lambda m: m.state is MotorStatus.READY)
        assert st.rate_hz == 50.0 and not st.lockstep
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        lost = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.state is MotorStatus.LOST)
        assert lost.reason == "motor node stopped"
    finally:
        proc.kill()
        proc.wait(5)


def test_cli_motor_node_killed_leaves_its_will(local_admin, probe, tmp_path):
    proc = motor_cli(local_admin, probe.node_id, tmp_path, "--backend", "sim", "--lockstep")
    try:
        probe.subscribe(K.ENV_MOTOR_STATE)
        probe.get(K.ENV_MOTOR_STATE, timeout=15, where=lambda m: m.state is MotorStatus.READY)
        backend = bus_env(local_admin, probe.node_id)  # the CLI node serves an env
        assert backend.reset((math.pi, 0.0))[0] == math.pi
        assert backend.step(1.0)[:2] == physics.step(DEFAULT_PARAMS, math.pi, 0.0, 1.0)
        backend.close()
        proc.send_signal(signal.SIGKILL)
        lost = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.state is MotorStatus.LOST)
        assert lost.reason == "motor node vanished"
    finally:
        proc.kill()
        proc.wait(5)


# -------------------------------------------------------------------------------------- reset
def test_reset_is_idempotent_by_episode_and_refuses_old_episodes(start_node, probe):
    start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_OBS)
    first = reset(probe, 1, (3.0, 0.25))
    assert first.ok and (first.theta, first.theta_dot) == (3.0, 0.25)
    probe.publish(K.ENV_ACT, Action(1, 1, 0.5))
    probe.get(K.ENV_OBS)
    again = reset(probe, 1, (1.0, 1.0), request_id="retry")  # duplicate: same answer, no reset
    assert again == ResetReply("retry", 1, True, 3.0, 0.25, 0.0)
    probe.publish(K.ENV_ACT, Action(1, 2, 0.5))  # the episode goes on
    assert probe.get(K.ENV_OBS).seq == 2
    assert reset(probe, 2, (0.5, 0.0)).ok
    old = reset(probe, 0)
    assert not old.ok and "not newer" in old.error


def test_closed_loop_reset_waits_until_the_pendulum_hangs_still(start_node, probe):
    motor = SimMotor(DEFAULT_PARAMS.replace(dt=0.02))
    motor.set_state(math.pi + 0.3, 0.0)
    start_node(motor=motor, rate_hz=50.0)
    probe.subscribe(K.ENV_RESET_REPLY)
    t0 = time.monotonic()
    reply = reset(probe, 1, initial=None)
    took = time.monotonic() - t0
    assert reply.ok
    assert abs(reply.theta - math.pi) < math.radians(2) and abs(reply.theta_dot) < 0.05
    assert took > 0.5  # still for 0.5 s at least, then answered


def test_closed_loop_reset_timeout_is_a_fault(start_node, probe):
    motor = SimMotor(DEFAULT_PARAMS.replace(damping=0.0))  # swings for ever
    motor.set_state(math.pi + 0.5, 0.0)
    start_node(motor=motor, lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_MOTOR_STATE)
    reply = reset(probe, 1, initial=None, timeout_s=3.0)
    assert not reply.ok and "timed out after 3 s" in reply.error
    st = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.state is MotorStatus.FAULT)
    assert "timed out" in st.reason
    assert motor.command == 0.0


# ---------------------------------------------------------------------------------- stepping
def test_actions_are_clamped_and_stale_ones_dropped(start_node, probe):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_OBS)
    assert reset(probe, 1, (math.pi, 0.0)).ok
    probe.publish(K.ENV_ACT, Action(1, 1, 7.5))
    obs = probe.get(K.ENV_OBS)
    assert obs.u_applied == 2.0
    assert (obs.theta, obs.theta_dot) == physics.step(DEFAULT_PARAMS, math.pi, 0.0, 2.0)
    dropped = node.stats.dropped
    probe.publish(K.ENV_ACT, Action(1, 1, 1.0))  # same seq again
    probe.publish(K.ENV_ACT, Action(9, 2, 1.0))  # wrong episode
    probe.publish(K.ENV_ACT, Action(1, 2, -1.0))
    assert probe.get(K.ENV_OBS).seq == 2  # only the fresh one was answered
    assert node.stats.dropped == dropped + 2


def test_real_time_steps_one_per_period_and_report_late_actions(start_node, local_admin, uid):
    node = start_node(rate_hz=20.0)
    env = bus_env(local_admin, uid)
    try:
        env.reset((math.pi, 0.0))
        times = []
        for _ in range(20):
            env.step(0.0)
            times.append(time.monotonic())
        periods = np.diff(times)
        assert abs(np.median(periods) - 0.05) < 0.005  # one env step per control period
        time.sleep(0.08)  # the user's code is too slow for one step
        _, _, _, info = env.step(0.0)
        assert info["deadline_miss"] is True
        assert node.stats.late_actions >= 1
    finally:
        env.close()


# ------------------------------------------------------------------------------------- safety
def test_watchdog_cuts_torque_within_150_ms_of_the_last_action(start_node, local_admin, uid):
    motor = SimMotor()
    node = start_node(motor=motor, rate_hz=20.0)
    env = bus_env(local_admin, uid)
    try:
        env.reset((math.pi, 0.0))
        delays = []
        for trial in range(3):
            for _ in range(3):
                env.step(1.0)
            # The last action lands 10 ms into a period (a real controller's compute time); the
            # cut comes at the third tick after it, 2 to 3 periods after it arrived.
            time.sleep(0.010)
            sent = time.monotonic()
            env.step(1.0)
            assert motor.command == 1.0
            cut = wait_for(lambda: motor.command == 0.0, 1.0)
            delays.append(cut - sent)
        assert all(0.09 <= d <= 0.150 for d in delays), delays
        assert node.stats.watchdog_trips == 3
    finally:
        env.close()


def test_estop_zeroes_torque_until_the_next_reset(start_node, probe):
    motor = SimMotor()
    start_node(motor=motor, lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_OBS, K.ENV_MOTOR_STATE)
    assert reset(probe, 1).ok
    probe.publish(K.ENV_ACT, Action(1, 1, 2.0))
    assert probe.get(K.ENV_OBS).u_applied == 2.0
    probe.publish(K.ENV_ESTOP, EStop("operator pressed the button", time.time()))
    st = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.state is MotorStatus.ESTOP)
    assert "operator" in st.reason and motor.command == 0.0
    probe.publish(K.ENV_ACT, Action(1, 2, 2.0))
    obs = probe.get(K.ENV_OBS)
    assert obs.u_applied == 0.0 and "e-stop" in obs.fault
    assert reset(probe, 2).ok  # a reset clears it
    probe.publish(K.ENV_ACT, Action(2, 1, 2.0))
    obs = probe.get(K.ENV_OBS)
    assert obs.u_applied == 2.0 and obs.fault is None


def test_overspeed_cuts_the_motor_and_truncates_the_episode(start_node, local_admin, uid):
    import gymnasium as gym

    motor = SimMotor()
    start_node(motor=motor, lockstep=True, overspeed_rad_s=1.5)
    env = gym.make("RaasPendulum-v0", backend=bus_env(local_admin, uid))
    try:
        env.reset(seed=0)
        for i in range(40):
            _, _, terminated, truncated, info = env.step(np.array([2.0], np.float32))
            if truncated:
                break
        assert truncated and not terminated and "over-speed" in info["fault"]
        assert abs(env.unwrapped.state[1]) > 1.5 and motor.command == 0.0
        _, _, applied, info = env.unwrapped.backend.step(2.0)  # stepping on: no torque
        assert applied == 0.0 and "over-speed" in info["fault"]
        assert env.unwrapped.backend.motor_state.state is MotorStatus.FAULT
    finally:
        env.close()


ENV_CHILD = """
import sys, time
from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
url, node, user, pw = sys.argv[1:5]
b = BusBackend(BusConfig(mqtt_url=url, node_id=node, username=user, password=pw))
b.reset((3.14, 0.0))
for _ in range(3):
    b.step(2.0)
print("stepping", flush=True)
while True:
    b.step(2.0)
"""


def test_env_process_killed_makes_the_motor_safe_at_once(start_node, local_admin, probe):
    motor = SimMotor()
    start_node(motor=motor, rate_hz=20.0)
    probe.subscribe(K.ENV_MOTOR_STATE)
    child = subprocess.Popen([sys.executable, "-c", ENV_CHILD, local_admin.url(), probe.node_id,
                              local_admin.username, local_admin.password],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "stepping"
        wait_for(lambda: motor.command == 2.0, 2.0)
        killed = time.monotonic()
        child.send_signal(signal.SIGKILL)
        safe = wait_for(lambda: motor.command == 0.0, 2.0)
        st = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.reason and "env lost" in m.reason)
        assert st.state is MotorStatus.READY
        assert safe - killed < 0.1  # the will arrives in milliseconds, not a watchdog period
    finally:
        child.kill()
        child.wait(5)
        child.stdout.close()


GARBAGE = [b"", b"\x00\xff\xfe", b"not json", b"[]", b"{}", b'{"seq": NaN}', b"1e999",
           b'{"episode_id": 1, "seq": "one", "action": 1.0}',
           b'{"episode_id": 1, "seq": 1, "action": 1.0, "extra": 2}', b"{" * 5000,
           os.urandom(64), os.urandom(4096)]


def test_garbage_on_every_local_topic_is_dropped_and_the_node_keeps_serving(start_node, probe,
                                                                            caplog):
    node = start_node(rate_hz=50.0)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_OBS)
    assert reset(probe, 1).ok
    for kind in (k for k in K if k.name.startswith("ENV_")):  # every node-local topic
        for payload in GARBAGE:
            probe.client.publish(probe.topic(kind), payload, qos=1)
    for wrong in (f"raas/v1/env/{probe.node_id}/act/extra", f"raas/v1/env/{probe.node_id}/nope",
                  "raas/v1/env/other-node/act", "not/raas"):
        probe.client.publish(wrong, b'{"episode_id": 1, "seq": 1, "action": 2.0}', qos=1)
    probe.publish(K.ENV_ESTOP, b"{}")  # wrong schema on the safety topic: dropped, not obeyed
    time.sleep(0.3)
    assert node.stats.dropped >= 6 * (len(GARBAGE) - 1)
    logged = [r.getMessage() for r in caplog.records if r.name == "fleet_node.motor.node"]
    assert sum("dropped message on raas/v1/env/" in m for m in logged) >= 6 * (len(GARBAGE) - 1)
    assert node.status is MotorStatus.RUNNING and node._thread.is_alive()
    assert reset(probe, 2).ok
    probe.publish(K.ENV_ACT, Action(2, 1, 1.0))
    assert probe.get(K.ENV_OBS).u_applied == 1.0


def test_binary_and_json_actions_are_answered_in_kind_and_a_wrong_content_type_is_dropped(
        start_node, probe, local_admin):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_OBS)
    raw = []  # (content type, payload) of every observation
    sniffer = make_client(local_admin)
    sniffer.on_message = lambda c, u, m: raw.append((content_type(m), m.payload))
    connect(sniffer)
    sniffer.subscribe(probe.topic(K.ENV_OBS), 0)
    sniffer.loop_start()
    assert reset(probe, 1).ok
    t_act = probe.topic(K.ENV_ACT)

    def send(payload, content_type):
        probe.client.publish(t_act, payload, qos=0,
                             properties=PackedProperties(content_type)).wait_for_publish(5)

    try:
        send(protocol.encode_action(Action(1, 1, 0.5)), protocol.ACTION_CONTENT_TYPE)
        assert probe.get(K.ENV_OBS).seq == 1
        send(Action(1, 2, 0.5).to_bytes(), protocol.JSON_CONTENT_TYPE)
        assert probe.get(K.ENV_OBS).seq == 2
        deadline = time.monotonic() + 5
        while len(raw) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raw[0][0] == protocol.OBSERVATION_CONTENT_TYPE and len(raw[0][1]) == 52
        assert raw[1][0] is None and protocol.Observation.from_bytes(raw[1][1]).seq == 2
    finally:
        sniffer.disconnect()
        sniffer.loop_stop()
    dropped = node.stats.dropped
    send(protocol.encode_action(Action(1, 3, 0.5)), protocol.OBSERVATION_CONTENT_TYPE)
    send(Action(1, 3, 0.5).to_bytes(), protocol.ACTION_CONTENT_TYPE)  # JSON under the binary type
    send(protocol.encode_action(Action(1, 3, 0.5))[:-1], protocol.ACTION_CONTENT_TYPE)
    send(protocol.encode_action(Action(1, 3, 0.5)), None)  # binary without its type
    deadline = time.monotonic() + 5
    while node.stats.dropped < dropped + 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node.stats.dropped == dropped + 4
    send(protocol.pack_action(1, 3, -0.5), protocol.ACTION_CONTENT_TYPE)
    assert probe.get(K.ENV_OBS).u_applied == -0.5


# ---------------------------------------------------------------------------------- telemetry
def test_job_telemetry_file_and_batches_match_the_env(start_node, probe, local_admin, tmp_path):
    import gymnasium as gym

    start_node(lockstep=True, telemetry_batch=10)
    owner, job = "alice", f"job-{probe.node_id}"
    probe.client.subscribe(protocol.topic(K.NODE_JOB_TELEMETRY, node=probe.node_id, job=job), 0)
    probe.subscribe(K.ENV_MOTOR_STATE)
    probe.publish(K.ENV_JOB, JobBinding(time.time(), job, owner), retain=True)
    probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.job_id == job)
    env = gym.make("RaasPendulum-v0", backend=bus_env(local_admin, probe.node_id))
    env.reset(seed=5)
    rewards = []
    rng = np.random.default_rng(2)
    for _ in range(25):
        obs, r, *_ = env.step(rng.uniform(-3, 3, (1,)).astype(np.float32))
        rewards.append(r)
    env.close()
    probe.publish(K.ENV_JOB, JobBinding(time.time(), None), retain=True)
    st = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.job_id is None)
    data = read_telemetry(telemetry_path(tmp_path, job))
    assert list(data["seq"]) == list(range(1, 26))
    assert list(data["reward"]) == rewards  # exactly the env's rewards
    assert (np.abs(data["u_applied"]) <= 2.0).all() and (data["u_desired"] == data["u_applied"]).all()
    assert set(data["episode_id"]) == {1} and not data["deadline_miss"].any()
    batches = [probe.get(K.NODE_JOB_TELEMETRY) for _ in range(2)]  # 10 + 10; the last 5 at unbind
    assert all(isinstance(b, TelemetryBatch) and len(b.seq) == 10 for b in batches)
    assert batches[0].reward == tuple(rewards[:10])
    assert st.state is MotorStatus.READY  # env closed: episode over, torque off
    probe.client.publish(probe.topic(K.ENV_JOB), b"", qos=1, retain=True).wait_for_publish(5)


# ---------------------------------------------------------------------------------- self-test
def test_selftest_passes_on_sim_and_fails_on_a_wrong_calibration(start_node, probe, uid,
                                                                  local_admin):
    start_node(lockstep=True)
    probe.subscribe(K.ENV_SELFTEST_REPLY, K.ENV_MOTOR_STATE)
    probe.publish(K.ENV_SELFTEST, SelfTestRequest("st1", time.time()))
    ok = probe.get(K.ENV_SELFTEST_REPLY, where=lambda r: r.request_id == "st1")
    assert ok.ok and ok.details["max_error_rad"] == 0.0 and ok.details["samples"] == 20

    wrong = SimMotor(DEFAULT_PARAMS, model=DEFAULT_PARAMS.replace(action_gain=3.0))
    other = Probe(local_admin, uid + "b")
    try:
        start_node(motor=wrong, node_id=uid + "b", rate_hz=50.0)  # real time this time
        other.subscribe(K.ENV_SELFTEST_REPLY, K.ENV_MOTOR_STATE)
        other.publish(K.ENV_SELFTEST, SelfTestRequest("st2", time.time()))
        bad = other.get(K.ENV_SELFTEST_REPLY, timeout=10)
        assert not bad.ok and bad.details["max_error_rad"] > 0.25
        st = other.get(K.ENV_MOTOR_STATE, where=lambda m: m.state is MotorStatus.FAULT)
        assert "self-test failed" in st.reason
    finally:
        other.close()


def test_selftest_refused_while_an_episode_runs(start_node, probe):
    start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_SELFTEST_REPLY)
    probe.publish(K.ENV_STATE, EnvState(EnvStatus.RUNNING, time.time(), 1))
    assert reset(probe, 1).ok
    probe.publish(K.ENV_SELFTEST, SelfTestRequest("st3", time.time()))
    reply = probe.get(K.ENV_SELFTEST_REPLY)
    assert not reply.ok and "busy" in reply.details["error"]
