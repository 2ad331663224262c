"""Result summaries and telemetry readers (writing bundles: tests/fleet_node/test_bundle.py)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from gym_raas_mqtt import physics
from gym_raas_mqtt.protocol import TELEMETRY_COLUMNS
from gym_raas_mqtt.results import (
    ResultError,
    longest_upright_s,
    read_telemetry_csv,
    summarize_telemetry,
)

DT = 0.05


def write_csv(path, rows, with_episode=True):
    cols = (("episode_id",) if with_episode else ()) + TELEMETRY_COLUMNS
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
    return path


def rows_for(thetas, episode_id=1, reward=-1.0, miss_every=0):
    return [{"episode_id": episode_id, "seq": i + 1, "t": round((i + 1) * DT, 6), "theta": th,
             "theta_dot": 0.0, "u_desired": 3.0, "u_applied": 2.0, "reward": reward,
             "deadline_miss": int(bool(miss_every) and i % miss_every == 0)}
            for i, th in enumerate(thetas)]


def test_longest_upright_counts_the_longest_run():
    theta = np.array([3.0, 0.1, 0.2, -0.1, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    assert longest_upright_s(theta, DT) == pytest.approx(4 * DT)
    assert longest_upright_s(np.full(10, 3.0), DT) == 0.0
    assert longest_upright_s(np.zeros(10), DT) == pytest.approx(10 * DT)


def test_upright_uses_wrapped_angle():
    # Unwrapped θ = 2π is upright again after a full turn; |θ| = 0.31 is not.
    assert longest_upright_s(np.array([2 * math.pi] * 3), DT) == pytest.approx(3 * DT)
    assert longest_upright_s(np.array([0.31, -0.31, 0.31]), DT) == 0.0


def test_summary_numbers_from_csv(tmp_path):
    rows = rows_for([0.0] * 20, episode_id=1, reward=-0.5, miss_every=10) \
        + rows_for([3.0] * 5 + [0.1] * 30, episode_id=2, reward=-1.0)
    tel = read_telemetry_csv(write_csv(tmp_path / "t.csv", rows))
    s = summarize_telemetry(tel)
    assert s["steps"] == 55 and s["episodes"] == 2
    assert s["return"] == pytest.approx(20 * -0.5 + 35 * -1.0)
    assert s["deadline_misses"] == 2
    assert s["seconds_upright"] == pytest.approx(30 * DT)
    assert s["control_period_s"] == pytest.approx(DT)
    assert [e["steps"] for e in s["per_episode"]] == [20, 35]


def test_episodes_inferred_from_seq_restart(tmp_path):
    rows = rows_for([0.0] * 3) + rows_for([0.0] * 4)
    tel = read_telemetry_csv(write_csv(tmp_path / "t.csv", rows, with_episode=False))
    assert summarize_telemetry(tel)["episodes"] == 2
    assert list(tel.episode_id) == [1, 1, 1, 2, 2, 2, 2]


def test_summary_matches_physics_rollout(tmp_path):
    """Rewards of a simulated rollout (physics.py) sum to the summary's return."""
    params = physics.PendulumParams()
    rng = np.random.default_rng(0)
    theta, theta_dot, rows = 0.05, 0.0, []
    for i in range(200):
        u = float(rng.uniform(-2, 2))
        r = physics.reward(theta, theta_dot, u)
        theta, theta_dot = physics.step(params, theta, theta_dot, u)
        rows.append({"episode_id": 1, "seq": i + 1, "t": (i + 1) * DT, "theta": theta,
                     "theta_dot": theta_dot, "u_desired": u, "u_applied": u, "reward": r,
                     "deadline_miss": 0})
    tel = read_telemetry_csv(write_csv(tmp_path / "t.csv", rows))
    assert summarize_telemetry(tel)["return"] == pytest.approx(sum(r["reward"] for r in rows))


@pytest.mark.parametrize("content, msg", [
    ("seq,t\n1,0.05\n", "lacks column"),
    (",".join(TELEMETRY_COLUMNS) + "\n1,x,0,0,0,0,0,0\n", "malformed"),
])
def test_malformed_telemetry_rejected(tmp_path, content, msg):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(ResultError, match=msg):
        read_telemetry_csv(tmp_path / "t.csv")
