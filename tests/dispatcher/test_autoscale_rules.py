"""The autoscaler's rules without a broker (SQLite and PostgreSQL, an injected clock): which
standby nodes it wakes (fewest recent errors first), which idle nodes it puts in standby (only
after the hold-off, most errors first, never busy/draining/maintenance/waking ones), the minimum
kept online, the decisions recorded, and a policy that cannot be built refused at start-up."""

from __future__ import annotations

import numpy as np
import pytest

from dispatcher import nodes
from dispatcher import queue as Q
from dispatcher.autoscale.config import AutoscaleConfig
from dispatcher.autoscale.scaler import Autoscaler
from dispatcher.fleet import FleetView, Holding, NodeView
from dispatcher.health import FleetHealth
from dispatcher.models import FleetSample, ScalingDecision
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.protocol import JobSource, JobState, NodeCommandKind, NodeStatus, SourceKind
from gym_raas_mqtt.scaling.actions import ActionSpec

T0 = 1_800_000_000.0


class Want:
    """A policy asking for ``Want.target`` stations (target actions)."""

    target = 0

    def __init__(self, action_spec: ActionSpec) -> None:
        self.spec = action_spec

    def decide(self, observation: np.ndarray) -> int:
        return min(Want.target, self.spec.max_stations)

    def reset(self) -> None:
        pass


class Recorded:
    """Stands in for the dispatcher's publisher: records the commands sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, NodeCommandKind]] = []

    def command(self, node_id, kind, reason=None, job_id=None) -> None:
        self.sent.append((node_id, kind))


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def fleet_of(states: dict[str, NodeStatus]) -> FleetView:
    fleet = FleetView()
    for node_id, state in states.items():
        fleet.nodes[node_id] = NodeView(state=state, session=1, seen_at=T0)
        reg = nodes.NodeRegistry()
        reg.note(node_id, state=state.value, session=1, last_seen=T0)
        reg.flush()
    return fleet


def scaler(fleet, clock, **kw) -> tuple[Autoscaler, FleetHealth, Recorded]:
    pub = Recorded()
    health = FleetHealth(pub, fleet, nodes.NodeRegistry(), clock, 3)
    health.load()
    config = AutoscaleConfig(mode="on", policy=f"{__name__}:Want", action_mode="target",
                             interval_s=1.0, **kw)
    return Autoscaler(config, fleet, health, clock, 120.0), health, pub


def error_on(node_id: str) -> None:
    """One execution ended ``error`` (a platform fault) on ``node_id``."""
    Q.ensure_owner("alice", max_running=9)
    limits = Q.QueueLimits()
    job = Q.enqueue("alice", JobSource(SourceKind.GIT, url="https://h/r.git"), 10,
                    limits=limits, now=T0 - 100)
    Q.assign(job.id, node_id, limits=limits, now=T0 - 99)
    Q.error_and_requeue(job.id, 1, "docker died", now=T0 - 98)


def test_wakes_fewest_errors_first_and_sleeps_only_after_the_hold_off(db):
    S = NodeStatus
    fleet = fleet_of({"a": S.IDLE, "b": S.STANDBY, "c": S.STANDBY, "d": S.STANDBY,
                      "busy": S.BUSY, "drained": S.IDLE, "held": S.IDLE})
    fleet.holding["busy"] = Holding("j", 1, JobState.RUNNING, "alice")
    nodes.set_standby(["b", "c", "d"], True, T0)
    nodes.set_draining("drained", True)
    nodes.set_maintenance("held", "bench work", T0)
    error_on("b")  # and a failed self-test: b has 2 recent errors, c 1, d none
    nodes.record_selftest("b", False, {}, T0 - 50, duration_s=1.0, reason="stuck")
    error_on("c")
    clock = Clock()
    auto, health, pub = scaler(fleet, clock, holdoff_s=30.0, min_online=1)
    Want.target = 4  # online: a + busy = 2 → wake the two with the fewest errors: d, then c
    d = auto.run()
    assert (d.online, d.target, d.woke, d.slept, d.reason) == (2, 4, ("d", "c"), (), None)
    assert set(pub.sent) == {("c", NodeCommandKind.WAKE), ("d", NodeCommandKind.WAKE)}
    assert nodes.standby_nodes() == {"b"} and "c" not in health.excluded
    assert ScalingDecision.select().count() == 1 and FleetSample.select().count() == 1
    # c and d still report standby (their wake under way): booting, not wakeable, not idle.
    clock.t += 1
    Want.target = 0
    d = auto.run()
    assert (d.online, d.slept) == (4, ())
    assert d.reason.startswith("hold-off")
    sample = FleetSample.select().order_by(FleetSample.t.desc()).first()
    assert (sample.idle, sample.busy, sample.booting, sample.standby) == (1, 1, 2, 1)
    # They come back idle; after the hold-off (since the wake and idle for as long) the idle
    # nodes go to standby, most errors first — down to the minimum, never the busy one.
    for node_id in ("c", "d"):
        fleet.nodes[node_id].state = S.IDLE
    clock.t += 10
    assert auto.run().slept == ()
    clock.t += 30
    d = auto.run()
    assert (d.online, d.target, d.slept) == (4, 1, ("c", "a", "d"))  # a: idle the longest
    assert nodes.standby_nodes() == {"b", "c", "a", "d"}


def test_off_records_samples_only_and_bad_policies_are_refused(db):
    fleet = fleet_of({"a": NodeStatus.IDLE})
    clock = Clock()
    pub = Recorded()
    health = FleetHealth(pub, fleet, nodes.NodeRegistry(), clock, 3)
    off = Autoscaler(AutoscaleConfig(policy="no.such:Policy"), fleet, health, clock, 120.0)
    assert off.run() is None and FleetSample.select().count() == 1 and pub.sent == []
    for bad in ("no.such.module:Policy", "nonsense", f"{__name__}:Missing"):
        with pytest.raises(ConfigError, match="RAAS_AUTOSCALE_POLICY"):
            Autoscaler(AutoscaleConfig(mode="on", policy=bad), fleet, health, clock, 120.0)
    for bad in ({"mode": "maybe"}, {"interval_s": 0}, {"holdoff_s": -1}, {"min_online": -1},
                {"action_mode": "jump"}):
        with pytest.raises(ConfigError):
            AutoscaleConfig(**bad)
