"""The env's bus backend against a real node-local Mosquitto and a motor node in lockstep."""

from __future__ import annotations

import math
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from fleet_node.motor.config import MotorConfig
from fleet_node.motor.node import MotorNode
from fleet_node.motor.sim_motor import SimMotor
from gym_raas_mqtt import physics
from gym_raas_mqtt.backends import make_backend
from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
from gym_raas_mqtt.errors import BackendError, ConfigError, MotorFault
from gym_raas_mqtt.mqtt import connect, content_type, make_client
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.protocol import (ACTION_CONTENT_TYPE, OBSERVATION_CONTENT_TYPE, Action,
                                    EnvState, EnvStatus, MotorState, MotorStatus, ResetReply,
                                    ResetRequest, TopicKind, decode_action, decode_observation,
                                    topic)

pytestmark = pytest.mark.broker


@pytest.fixture
def admin(local_broker):
    a = local_broker.admin
    return local_broker.unix_address(a.username, a.password)


def config(address, node_id, **kw) -> BusConfig:
    return BusConfig(mqtt_url=address.url(), node_id=node_id, username=address.username,
                     password=address.password, **kw)


@pytest.fixture
def node(admin, uid, tmp_path):
    n = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True),
                  address=admin).start()
    yield n
    n.close()


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    states, rewards, infos = [env.unwrapped.state], [], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        states.append(env.unwrapped.state)
        rewards.append(r)
        infos.append(info)
    return states, rewards, infos


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_bus_reproduces_the_in_process_simulation_bit_for_bit(local_broker, admin, uid,
                                                              tmp_path, transport):
    address = admin if transport == "unix" else local_broker.address(admin.username,
                                                                     admin.password)
    n = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True),
                  address=address).start()
    try:
        rng = np.random.default_rng(7)
        actions = [rng.uniform(-2.5, 2.5, (1,)).astype(np.float32) for _ in range(200)]
        sim = gym.make("RaasPendulum-v0", backend="sim")
        bus = gym.make("RaasPendulum-v0", backend=BusBackend(config(address, uid)))
        for seed, options in ((11, None), (12, {"initial_state": "uniform"})):
            sim.reset(seed=seed, options=options)
            bus.reset(seed=seed, options=options)
            a_states, a_rewards, _ = rollout(sim, seed, actions)
            b_states, b_rewards, b_infos = rollout(bus, seed, actions)
            assert b_states == a_states  # float64 θ, θ̇ compared with ==
            assert b_rewards == a_rewards
            assert not any(i["deadline_miss"] for i in b_infos)
            assert [i["u_applied"] for i in b_infos] == [float(np.clip(a[0], -2, 2))
                                                         for a in actions]
        bus.close()
    finally:
        n.close()


def test_params_come_from_the_motor_node(node, admin, uid):
    b = BusBackend(config(admin, uid), DEFAULT_PARAMS.replace(dt=0.5, calibration_id="local"))
    try:
        assert b.params.dt == 0.05 and b.params.calibration_id == DEFAULT_PARAMS.calibration_id
        assert b.motor_state.state is MotorStatus.READY
    finally:
        b.close()


def test_missing_motor_node_is_an_error_within_one_second(admin, uid):
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="no motor node"):
        BusBackend(config(admin, uid))
    assert time.monotonic() - t0 < 1.2


def test_unreachable_broker_is_an_error_at_once(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach"):
        BusBackend(BusConfig(mqtt_url=f"unix://{tmp_path}/nothing.sock", node_id="n1"))
    assert time.monotonic() - t0 < 1.0


def test_wrong_password_is_an_error_within_one_second(admin, uid):
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="did not accept"):
        BusBackend(BusConfig(mqtt_url=admin.url(), node_id=uid, username="admin",
                             password="wrong"))
    assert time.monotonic() - t0 < 1.2


def test_connect_timeout_above_one_second_is_refused():
    with pytest.raises(ConfigError):
        BusConfig(connect_timeout_s=5.0)


def test_stopped_motor_node_is_refused_and_a_vanishing_one_fails_the_step(admin, uid, tmp_path):
    n = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True),
                  address=admin).start()
    b = BusBackend(config(admin, uid))
    b.reset((math.pi, 0.0))
    b.step(0.0)
    n.close()  # publishes a retained "lost"
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="vanished|no observation"):
        b.step(0.0)
    assert time.monotonic() - t0 < 1.1
    b.close()
    with pytest.raises(BackendError, match="not running"):
        BusBackend(config(admin, uid))


def test_a_silent_motor_node_times_out_instead_of_hanging(admin, uid):
    # A fake motor node: a retained state, resets answered only when ``answer`` is set, actions
    # never (e.g. its loop is wedged).
    answer = threading.Event()

    def on_message(client, userdata, message):
        req = ResetRequest.from_bytes(message.payload)
        if answer.is_set():
            client.publish(topic(TopicKind.ENV_RESET_REPLY, node=uid),
                           ResetReply(req.request_id, req.episode_id).to_bytes(), qos=1)

    c = make_client(admin)
    c.on_message = on_message
    connect(c)
    c.loop_start()
    c.subscribe(topic(TopicKind.ENV_RESET, node=uid), 1)
    t = topic(TopicKind.ENV_MOTOR_STATE, node=uid)
    c.publish(t, MotorState(MotorStatus.READY, time.time(), rate_hz=20.0).to_bytes(), qos=1,
              retain=True).wait_for_publish(5)
    try:
        b = BusBackend(config(admin, uid, reset_timeout_s=0.3, step_timeout_s=0.2))
        with pytest.raises(BackendError, match="step\\(\\) before reset"):
            b.step(0.0)
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="no reset reply"):
            b.reset((0.0, 0.0))
        assert time.monotonic() - t0 < 3.0
        answer.set()
        b.reset((0.0, 0.0))
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="no observation for step 1 within 0.2 s"):
            b.step(0.0)
        assert 0.2 <= time.monotonic() - t0 < 0.5
        b.close()
        b.close()  # idempotent
        with pytest.raises(BackendError, match="closed"):
            b.step(0.0)
    finally:
        c.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()


class UnplaceableSim(SimMotor):
    """Like hardware, cannot be placed: resets are closed-loop."""

    def set_state(self, theta, theta_dot):
        return False


def test_reset_failure_is_a_motor_fault(admin, uid, tmp_path):
    motor = UnplaceableSim(DEFAULT_PARAMS.replace(damping=0.0))  # swings for ever
    SimMotor.set_state(motor, math.pi + 1.0, 0.0)
    n = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True,
                              reset_timeout_s=1.0), motor=motor, address=admin).start()
    try:
        b = BusBackend(config(admin, uid))
        with pytest.raises(MotorFault, match="timed out after 1 s"):
            b.reset((math.pi, 0.0))
        b.close()
    finally:
        n.close()


def test_from_env_and_make_backend_read_raas_variables(node, admin, uid, monkeypatch, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(admin.password + "\n")
    monkeypatch.setenv("RAAS_MQTT_URL", admin.url())
    monkeypatch.setenv("RAAS_NODE_ID", uid)
    monkeypatch.setenv("RAAS_MQTT_USERNAME", admin.username)
    monkeypatch.setenv("RAAS_MQTT_PASSWORD_FILE", str(pw))
    env = gym.make("RaasPendulum-v0")  # RAAS_MQTT_URL set: the bus backend by default
    try:
        obs, info = env.reset(seed=1)
        assert info["backend"] == "bus" and info["episode_id"] == 1
        assert env.step(np.array([0.5], np.float32))[4]["deadline_miss"] is False
        env.reset()
        assert env.unwrapped.backend._episode == 2
    finally:
        env.close()
    assert isinstance(make_backend("bus", DEFAULT_PARAMS), BusBackend)


def test_a_second_env_continues_the_episode_numbering(node, admin, uid):
    a = BusBackend(config(admin, uid))
    a.reset((math.pi, 0.0))
    a.reset((math.pi, 0.0))
    a.close()
    b = BusBackend(config(admin, uid))
    try:
        b.reset((0.1, 0.0))  # must not get episode 1's cached reply
        assert b._episode == 3
        assert b.step(0.0)[:2] == physics.step(DEFAULT_PARAMS, 0.1, 0.0, 0.0)
    finally:
        b.close()


def test_job_credentials_over_the_unix_socket(local_broker, tmp_path):
    """The production set-up: the motor's and the job's own credentials, ACLs enforced."""
    from broker_config.provision import create_job_client, delete_job_client

    node_id = local_broker.node_id
    motor_addr = local_broker.service("motor")
    motor_unix = local_broker.unix_address(motor_addr.username, motor_addr.password)
    n = MotorNode(MotorConfig(node_id=node_id, data_dir=tmp_path, lockstep=True),
                  address=motor_unix).start()
    user, pw = create_job_client(local_broker.admin, node_id, "job-acl")
    try:
        job = local_broker.unix_address(user, pw)
        env = gym.make("RaasPendulum-v0", backend=BusBackend(config(job, node_id)))
        sim = gym.make("RaasPendulum-v0", backend="sim")
        actions = [np.array([a], np.float32) for a in np.linspace(-2, 2, 30)]
        assert rollout(env, 3, actions)[:2] == rollout(sim, 3, actions)[:2]
        env.close()
        with pytest.raises(BackendError):  # a job client cannot drive another node
            BusBackend(config(job, "other-node"))
    finally:
        delete_job_client(local_broker.admin, user)
        n.close()


def test_late_steps_are_reported_not_hidden(admin, uid, tmp_path):
    n = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, rate_hz=50.0),
                  address=admin).start()
    try:
        b = BusBackend(config(admin, uid))
        b.reset((math.pi, 0.0))
        misses = []
        for i in range(12):
            if i in (5, 9):
                time.sleep(0.05)  # 2.5 periods of user computation
            misses.append(b.step(0.0)[3]["deadline_miss"])
        # Only the late actions are certain misses: on a loaded machine a late tick is one too.
        assert misses[5] and misses[9]
        assert n.stats.late_actions >= 2
        b.close()
    finally:
        n.close()


def test_actions_go_out_qos0_with_a_one_second_expiry_and_env_state_is_retained(node, admin,
                                                                                uid):
    seen = []
    c = make_client(admin)
    c.on_message = lambda cl, u, m: seen.append(m)
    connect(c)
    c.loop_start()
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe([(topic(TopicKind.ENV_ACT, node=uid), 1),
                 (topic(TopicKind.ENV_STATE, node=uid), 1)])
    assert done.wait(5)
    try:
        b = BusBackend(config(admin, uid))
        b.reset((math.pi, 0.0))
        b.step(0.25)
        b.close()
        deadline = time.monotonic() + 5
        while (time.monotonic() < deadline
               and sum(m.topic.endswith("/env/state") for m in seen) < 4):
            time.sleep(0.01)
        acts = [m for m in seen if m.topic.endswith("/act")]
        assert len(acts) == 1 and acts[0].qos == 0
        assert acts[0].properties.MessageExpiryInterval in (0, 1)  # remaining lifetime, ≤ 1 s
        states = [EnvState.from_bytes(m.payload).state for m in seen
                  if m.topic.endswith("/env/state")]
        assert states == [EnvStatus.IDLE, EnvStatus.RESETTING, EnvStatus.RUNNING, EnvStatus.IDLE]
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_long_pause_in_user_code_keeps_the_session(node, admin, uid):
    """Between calls the service thread answers keepalives: no will, the episode goes on."""
    b = BusBackend(config(admin, uid, keepalive_s=1))
    try:
        b.reset((math.pi, 0.0))
        b.step(0.5)
        # Mosquitto declares a silent client lost 1.5 × keepalive after its last packet, checked
        # every few seconds (measured: 4.5-4.8 s with keepalive 1 s): wait well beyond that.
        time.sleep(7.0)
        assert node.status is MotorStatus.RUNNING and node.reason is None
        assert b.step(0.5)[3]["deadline_miss"] is False
    finally:
        b.close()


def test_actions_and_observations_travel_binary_named_by_their_content_type(node, admin, uid):
    seen = []
    c = make_client(admin)
    c.on_message = lambda cl, u, m: seen.append(m)
    connect(c)
    c.loop_start()
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe([(topic(TopicKind.ENV_ACT, node=uid), 0), (topic(TopicKind.ENV_OBS, node=uid), 0)])
    assert done.wait(5)
    try:
        b = BusBackend(config(admin, uid))
        b.reset((math.pi, 0.0))
        theta, theta_dot, u, info = b.step(0.25)
        b.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(seen) < 2:
            time.sleep(0.01)
        (act,) = [m for m in seen if m.topic.endswith("/act")]
        (obs,) = [m for m in seen if m.topic.endswith("/obs")]
        assert content_type(act) == ACTION_CONTENT_TYPE and len(act.payload) == 26
        assert decode_action(act.payload) == Action(node.episode_id, 1, 0.25)
        assert content_type(obs) == OBSERVATION_CONTENT_TYPE and len(obs.payload) == 52
        o = decode_observation(obs.payload)
        assert (o.seq, o.theta, o.theta_dot, o.u_applied) == (1, theta, theta_dot, u)
    finally:
        c.disconnect()
        c.loop_stop()
