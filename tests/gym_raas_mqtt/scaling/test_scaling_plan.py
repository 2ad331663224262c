"""Fleet planning on a small synthetic trace, the plan plot, and policy loading."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from gym_raas_mqtt.scaling import plan
from gym_raas_mqtt.scaling.actions import ActionSpec
from gym_raas_mqtt.scaling.policies import (
    BUILTIN_POLICIES,
    PID,
    KeepConstant,
    Policy,
    TargetCapacity,
    Threshold,
    load_policy,
)
from gym_raas_mqtt.scaling.synthetic import synthetic_trace
from gym_raas_mqtt.scaling.trace import read_trace, write_trace


@pytest.fixture(scope="module")
def day_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "day.csv"
    write_trace(path, synthetic_trace(days=1, rate_per_h=12.0, seed=3))
    return read_trace(path)


def test_plan_finds_the_smallest_fleet_meeting_the_slo(day_trace, tmp_path):
    result = plan.plan_fleet(day_trace, slo_wait_s=300, quantile=0.9, sizes=[1, 2, 3, 4, 6, 8],
                             policies=["keep", "threshold", "target"])
    assert len(result.rows) == 18
    assert result.size is not None and result.policy in ("keep", "threshold", "target")
    by_size = {r.size: r for r in result.best_per_size()}
    assert not by_size[1].meets_slo  # 12 jobs/h of 10 min: one station cannot keep up
    assert all(not by_size[s].meets_slo for s in by_size if s < result.size)
    assert by_size[result.size].meets_slo and by_size[result.size].policy == result.policy
    keep = {r.size: r for r in result.rows if r.policy == "keep"}
    assert keep[8].wait_quantile_s <= keep[2].wait_quantile_s  # more stations, shorter waits
    assert keep[8].cost > keep[2].cost
    png = tmp_path / "plan.png"
    plan.plot_plan(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_plan_refuses_nonsense(day_trace):
    with pytest.raises(ValueError, match="quantile"):
        plan.plan_fleet(day_trace, 60, 1.5)
    with pytest.raises(ValueError, match="slo_wait_s"):
        plan.plan_fleet(day_trace, -1, 0.9)
    with pytest.raises(ValueError, match="unknown policies"):
        plan.plan_fleet(day_trace, 60, 0.9, sizes=[2], policies=["magic"])
    with pytest.raises(ValueError, match="≥ 1"):
        plan.plan_fleet(day_trace, 60, 0.9, sizes=[0, 2])


def test_env_kwargs_take_the_traces_latencies(day_trace):
    kwargs = plan.env_kwargs_from_trace(day_trace)
    assert kwargs["arrivals"] == "trace" and 100 < kwargs["boot_s"] < 140
    assert 20 < kwargs["reset_s"] < 40 and 15 < kwargs["selftest_s"] < 25


def test_builtin_policies_and_loading():
    spec = ActionSpec("delta", 1, 10, 1)
    idle_fleet = np.array([0.5, 0.0, 0, 0.5, 0, 0, 0, 0, 1], dtype=np.float32)
    swamped = np.array([0.5, 0.5, 0, 0.5, 0.8, 0.6, 0.8, 0, 1], dtype=np.float32)
    for name, cls in BUILTIN_POLICIES.items():
        policy = load_policy(name, action_spec=spec)
        assert isinstance(policy, cls) and isinstance(policy, Policy)
        policy.reset()
        want = spec.noop if name == "keep" else 2  # queue, wait over SLO, load > fleet: up
        assert policy.decide(swamped) == want, name
    assert Threshold(spec).decide(idle_fleet) == 0
    assert TargetCapacity(spec).decide(idle_fleet) == 0
    assert KeepConstant(spec).decide(idle_fleet) == 1
    assert PID(spec).decide(idle_fleet) == 0
    target = ActionSpec("target", 1, 10, 0)
    assert KeepConstant(target, stations=7).decide(idle_fleet) == 7
    assert TargetCapacity(target, utilization=0.5).decide(swamped) == 10  # 15 wanted, 10 max


def test_load_policy_by_import_path(monkeypatch):
    module = types.ModuleType("my_scaling_policies")

    class Always:
        def __init__(self, action=2):
            self.action = action

        def decide(self, observation):
            return self.action

        def reset(self):
            pass

    module.Always = Always
    module.NotAPolicy = object
    monkeypatch.setitem(sys.modules, "my_scaling_policies", module)
    assert load_policy("my_scaling_policies:Always", action=1).decide(None) == 1
    for bad, message in (("nonsense", "built-in"), ("no_such_module_xyz:P", "cannot import"),
                         ("my_scaling_policies:Missing", "no attribute"),
                         ("my_scaling_policies:NotAPolicy", "did not build a policy"),
                         ("my_scaling_policies:", "built-in")):
        with pytest.raises(ValueError, match=message):
            load_policy(bad)
