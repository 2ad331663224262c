"""Minari datasets from job telemetry: one Minari episode per recorded episode, many jobs at once.

Minari (Farama's offline-RL format) is an optional dependency (the ``dataset`` extra:
``pip install "gym-raas-mqtt[dataset]"``); only :func:`write_minari` imports it. The telemetry of a
bundle is the motor node's record (never user code): row k of an episode holds the state the
k-th action was applied in, that action and its reward. In the env's terms (``RaasPendulum-v0``):

=================  ====================================================================================
``observations``   float32 (N+1, 3) = cos θ, sin θ, θ̇ [rad/s] of rows 0..N−1, then the observation
                   after the last step — not recorded, so predicted with the model
                   (:func:`gym_raas_mqtt.physics.step`, default parameters, the recorded control
                   period); ``infos["predicted"]`` marks it
``actions``        float32 (N, 1) the controller's action (``u_desired``, clipped to ±2 as the env does)
``rewards``        float64 (N,) as the motor node computed them (their sum is the summary's return)
``terminations``   all False (the env never terminates)
``truncations``    True at the last step only (time limit, fault or end of the job)
``infos``          per observation (N+1): ``t`` [s since the episode started], ``u_applied``,
                   ``deadline_miss`` of the step that led to it (0.0 / False at reset), ``predicted``
=================  ====================================================================================
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from gym_raas_mqtt import physics
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.results import Telemetry, control_period, episode_slices

ENV_ID = "RaasPendulum-v0"
DEFAULT_DATASET_ID = "raas/pendulum/jobs-v0"
DATASET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,2}-v[0-9]{1,6}$")
"""Minari's ``(namespace/)(env_name/)name-vN``, in characters that are safe as folder names."""
INSTALL_HINT = 'Minari is not installed: pip install "gym-raas-mqtt[dataset]"'


class DatasetError(RaasError):
    """A dataset cannot be written (Minari missing, no episodes, an existing dataset id)."""


@dataclass(frozen=True)
class Run:
    """One job's recorded run: its telemetry and the provenance kept in the dataset's metadata.

    Attributes:
        job_id: the job's id.
        telemetry: the bundle's telemetry.
        summary: the bundle's summary.json (node, calibration, commit, ... are copied from it).
    """

    job_id: str
    telemetry: Telemetry
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Episode:
    """One episode as Minari stores it (shapes in the module docstring; N steps)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.rewards)


def observe(theta: np.ndarray, theta_dot: np.ndarray) -> np.ndarray:
    """The env's observations float32 (N, 3) = cos θ, sin θ, θ̇ of states (θ [rad], θ̇ [rad/s])."""
    return np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=1).astype(np.float32)


def episodes_of(tel: Telemetry, params: physics.PendulumParams = physics.DEFAULT_PARAMS
                ) -> list[tuple[int, Episode]]:
    """Split telemetry into episodes in the env's terms.

    Args:
        tel: a bundle's telemetry.
        params: the model predicting each episode's final observation (its ``dt`` is replaced by
            the recorded control period).

    Returns:
        ``(episode_id, episode)`` per recorded episode with at least one step, in order.
    """
    p = params.replace(dt=control_period(tel))
    out = []
    for episode_id, s in episode_slices(tel):
        n = s.stop - s.start
        th, thd, u_des = tel.theta[s], tel.theta_dot[s], tel.u_desired[s]
        u_app = tel.u_applied[s]
        th_end, thd_end = physics.step(p, float(th[-1]), float(thd[-1]), float(u_app[-1]))
        observations = np.concatenate([observe(th, thd), observe(np.array([th_end]),
                                                                 np.array([thd_end]))])
        t = np.append(tel.t[s], tel.t[s][-1] + p.dt)
        truncations = np.zeros(n, bool)
        truncations[-1] = True
        out.append((episode_id, Episode(
            observations=observations,
            actions=np.clip(u_des, -p.max_action, p.max_action).astype(np.float32).reshape(n, 1),
            rewards=tel.reward[s].astype(np.float64), terminations=np.zeros(n, bool),
            truncations=truncations,
            infos={"t": t.astype(np.float64),
                   "u_applied": np.append(0.0, u_app).astype(np.float64),
                   "deadline_miss": np.append(False, tel.deadline_miss[s]).astype(bool),
                   "predicted": np.append(np.zeros(n, bool), True)})))
    return out


@contextmanager
def _datasets_root(root: Path) -> Iterator[None]:
    """Minari finds datasets under ``MINARI_DATASETS_PATH``: point it at ``root`` meanwhile."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def write_minari(runs: Sequence[Run], root: str | Path, dataset_id: str = DEFAULT_DATASET_ID,
                 author: str | None = None) -> dict[str, Any]:
    """Write the runs' episodes as one Minari dataset under ``root`` (a datasets folder).

    Load it with ``MINARI_DATASETS_PATH=root`` and ``minari.load_dataset(dataset_id)``. The
    metadata's ``raas`` entry lists, per job, its node, calibration, commit and which dataset
    episodes hold its episodes.

    Returns:
        ``{"dataset_id", "path", "episodes", "steps"}``.

    Raises:
        DatasetError: Minari is not installed, the runs hold no episode, or ``dataset_id``
            exists under ``root``.
    """
    try:
        import gymnasium as gym
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError as e:
        raise DatasetError(f"{INSTALL_HINT} ({e})") from None
    if not DATASET_ID.match(dataset_id):
        raise DatasetError(f"dataset id {dataset_id[:80]!r} must look like "
                           "namespace/name-v0 (letters, digits, _ and -)")
    root = Path(root)
    buffers, provenance = [], []
    for run in runs:
        first = len(buffers)
        episode_ids = []
        for episode_id, ep in episodes_of(run.telemetry):
            buffers.append(EpisodeBuffer(
                id=len(buffers), observations=ep.observations, actions=ep.actions,
                rewards=list(ep.rewards), terminations=list(ep.terminations),
                truncations=list(ep.truncations), infos=ep.infos))
            episode_ids.append(episode_id)
        provenance.append({
            "job_id": run.job_id, "node_id": run.summary.get("node_id"),
            "calibration_id": run.summary.get("calibration_id"),
            "commit_sha": run.summary.get("commit_sha"), "state": run.summary.get("state"),
            "dataset_episodes": [first, len(buffers)], "episode_ids": episode_ids})
    if not buffers:
        raise DatasetError("the jobs' telemetry holds no episode")
    if (root / dataset_id).exists():
        raise DatasetError(f"{root / dataset_id} exists; choose another --id or folder")
    root.mkdir(parents=True, exist_ok=True)
    env = gym.make(ENV_ID, backend="sim")  # the spec researchers recover (simulation)
    try:
        with _datasets_root(root), warnings.catch_warnings():
            # Minari warns about every optional field left empty (permalink, e-mail, ...)
            warnings.simplefilter("ignore", UserWarning)
            dataset = minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env, algorithm_name="recorded on RaaS-MQTT",
                author=author, description="Telemetry of RaaS-MQTT jobs "
                f"{', '.join(r.job_id for r in runs)[:500]}, recorded by the motor nodes; "
                "the final observation of each episode is predicted (infos['predicted']).")
            dataset.storage.update_metadata({"raas": {"env_id": ENV_ID, "jobs": provenance}})
    finally:
        env.close()
    steps = sum(len(b.rewards) for b in buffers)
    return {"dataset_id": dataset_id, "path": str(root / dataset_id), "episodes": len(buffers),
            "steps": steps}

