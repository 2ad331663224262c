"""Agent presence on a real central broker: birth, will (with delay) on SIGKILL, session numbers,
clean exit, rebirth on a dispatcher birth and on command, malformed messages."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from gym_raas_mqtt import protocol
from gym_raas_mqtt.mqtt import message_expiry
from gym_raas_mqtt.protocol import (
    DispatcherState,
    NodeCommand,
    NodeCommandKind,
    NodeStatus,
    TopicKind,
)
from tests.fleet_node.agent.agent_harness import Recorder, close_client, make_node, wait_for

pytestmark = pytest.mark.broker


@pytest.fixture
def node(broker, tmp_path, uid):
    n = make_node(broker, tmp_path, uid)
    yield n
    n.close()


@pytest.fixture
def watch(broker, node):
    rec = Recorder(broker.admin, protocol.node_filter(node.node_id),
                   protocol.topic(TopicKind.DISPATCHER_STATE))
    yield rec
    rec.close()


def test_birth_is_meta_then_state_with_selftest(node, watch):
    node.start_motor()
    agent = node.start_agent()
    wait_for(lambda: [s for s in watch.states() if s.state is NodeStatus.IDLE], what="idle")
    kinds = [protocol.parse_topic(t).kind for t, *_ in watch.messages
             if t.startswith(protocol.node_filter(node.node_id)[:-2])]
    assert kinds[0] is TopicKind.NODE_META and TopicKind.NODE_STATE in kinds
    metas = [m for m, retain, _ in watch.decoded(TopicKind.NODE_META)]
    assert metas[-1].backend == "sim" and metas[-1].calibration_id != "unknown"
    assert metas[-1].image_digest == "sha256:test-subprocess-runner" and metas[-1].hostname
    states = watch.states()
    assert [s.state for s in states][:1] == [NodeStatus.RESETTING]  # self-test first
    assert states[-1].state is NodeStatus.IDLE and states[-1].session == 1
    assert agent.status is NodeStatus.IDLE
    # Both are retained: a late subscriber gets them at once, flagged retained.
    late = Recorder(node.broker.admin, protocol.node_filter(node.node_id))
    try:
        wait_for(lambda: len(late.messages) >= 2, what="retained meta and state")
        got = {protocol.parse_topic(t).kind: retain for t, _, retain, _ in late.messages}
        assert got == {TopicKind.NODE_META: True, TopicKind.NODE_STATE: True}
        assert late.states()[-1] == states[-1]
    finally:
        late.close()


def test_clean_exit_publishes_offline_and_no_will(node, watch):
    node.start_agent(selftest=False)
    wait_for(lambda: watch.states(), what="birth")
    node.agent.stop()
    node.agent = None
    wait_for(lambda: watch.states()[-1].state is NodeStatus.OFFLINE, what="offline")
    time.sleep(2.5)  # longer than the will delay: a will would have arrived by now
    assert [s.state for s in watch.states()][-1] is NodeStatus.OFFLINE
    assert not [s for s in watch.states() if s.state is NodeStatus.LOST]


def test_will_after_delay_on_sigkill_and_session_increments(node, watch, tmp_path):
    """SIGKILL the agent process: `lost` (same session) only after the will delay; a restart
    announces a higher session."""
    env = node.agent_env()
    cmd = [sys.executable, "-m", "gym_raas_mqtt.cli", "node", "agent"]
    logfile = open(tmp_path / "agent.log", "ab")
    proc = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=logfile)
    try:
        birth = wait_for(lambda: [s for s in watch.states() if s.state is NodeStatus.IDLE],
                         timeout_s=20, what="birth of the agent process")[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        killed_at = time.monotonic()
        lost = wait_for(lambda: [(m, t) for m, _, t in watch.decoded(TopicKind.NODE_STATE)
                                 if m and m.state is NodeStatus.LOST], timeout_s=10,
                        what="will")[-1]
        delay = lost[1] - killed_at
        assert 1.5 <= delay <= 5.0, f"will after {delay:.2f} s, delay is 2 s"
        assert lost[0].session == birth.session
        proc = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=logfile)
        again = wait_for(lambda: [s for s in watch.states()
                                  if s.state is NodeStatus.IDLE and s.session > birth.session],
                         timeout_s=20, what="rebirth")[-1]
        assert again.session == birth.session + 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        wait_for(lambda: watch.states()[-1].state is NodeStatus.OFFLINE, what="offline")
    except AssertionError as e:
        raise AssertionError(f"{e}\nagent log:\n{(tmp_path / 'agent.log').read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        logfile.close()


def test_reconnect_within_will_delay_sends_no_will(node, watch, broker):
    """A dropped connection that comes back within the will delay publishes no `lost`, and the
    new connection announces a new session."""
    agent = node.start_agent(selftest=False)
    first = wait_for(lambda: watch.states(), what="birth")[-1]
    # Kick the agent off by connecting another client with its client id (broker takeover).
    from gym_raas_mqtt.mqtt import connect, make_client

    thief = make_client(node.central_address, f"node-{node.node_id}")
    connect(thief, 5)
    thief.loop_start()
    time.sleep(0.3)
    close_client(thief)
    later = wait_for(lambda: [s for s in watch.states() if s.session > first.session],
                     timeout_s=10, what="re-announce with a new session")[-1]
    assert later.state is NodeStatus.IDLE
    time.sleep(2.5)
    assert agent.status is NodeStatus.IDLE


def test_rebirth_on_newer_dispatcher_birth_and_on_command(node, watch):
    node.start_agent(selftest=False)
    wait_for(lambda: watch.states(), what="birth")
    n_meta = len(watch.decoded(TopicKind.NODE_META))
    name = protocol.topic(TopicKind.DISPATCHER_STATE)
    watch.publish(name, DispatcherState(True, time.time()).to_bytes(), retain=True)
    time.sleep(0.3)
    watch.publish(name, DispatcherState(True, time.time() + 1).to_bytes(), retain=True)
    wait_for(lambda: len(watch.decoded(TopicKind.NODE_META)) > n_meta, what="re-announce")
    n_meta = len(watch.decoded(TopicKind.NODE_META))
    watch.publish(name, DispatcherState(True, 1.0).to_bytes(), retain=True)  # older: ignored
    watch.publish(protocol.topic(TopicKind.NODE_CMD, node=node.node_id),
                  NodeCommand(NodeCommandKind.REBIRTH, time.time()).to_bytes(),
                  properties=message_expiry(30))
    wait_for(lambda: len(watch.decoded(TopicKind.NODE_META)) == n_meta + 1, what="rebirth")
    time.sleep(0.3)
    assert len(watch.decoded(TopicKind.NODE_META)) == n_meta + 1
    watch.publish(name, b"", retain=True)


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"{}", b'{"job_id": "../x"}', b"[1,2]",
                                     b'{"job_id":"a","owner":"b","version":1e999}'])
def test_malformed_messages_are_dropped(node, watch, payload):
    agent = node.start_agent(selftest=False)
    wait_for(lambda: watch.states(), what="birth")
    for kind in (TopicKind.NODE_JOB_NEXT, TopicKind.NODE_CMD):
        watch.publish(protocol.topic(kind, node=node.node_id), payload,
                      retain=kind is TopicKind.NODE_JOB_NEXT)
    n_meta = len(watch.decoded(TopicKind.NODE_META))
    watch.publish(protocol.topic(TopicKind.NODE_CMD, node=node.node_id),
                  NodeCommand(NodeCommandKind.REBIRTH, time.time()).to_bytes())
    wait_for(lambda: len(watch.decoded(TopicKind.NODE_META)) > n_meta, what="still alive")
    assert agent.status is NodeStatus.IDLE and agent.runner.calls == []
    watch.publish(protocol.topic(TopicKind.NODE_JOB_NEXT, node=node.node_id), b"", retain=True)
