"""`raas dataset export` round trip from real job telemetry: a simulated motor node (lockstep)
records two episodes that RaasPendulum-v0 plays over the node-local broker; the bundle built from
that record is exported (from its folder and through the dashboard's API) and loaded back with
``minari.load_dataset``: episode count and lengths match the telemetry, values equal it and what
the controller saw."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))
from dashboard_helpers import make_config, make_user, run_job_to_end  # noqa: E402

from dashboard.app import create_app  # noqa: E402
from dashboard.server import BackgroundServer  # noqa: E402
from dispatcher import queue  # noqa: E402
from dispatcher.models import database  # noqa: E402
from fleet_node.bundle import build_bundle  # noqa: E402
from fleet_node.motor.config import MotorConfig  # noqa: E402
from fleet_node.motor.node import MotorNode  # noqa: E402
from fleet_node.motor.telemetry import telemetry_path  # noqa: E402
from gym_raas_mqtt.backends.bus import BusBackend, BusConfig  # noqa: E402
from gym_raas_mqtt.cli import main  # noqa: E402
from gym_raas_mqtt.dataset import observe  # noqa: E402
from gym_raas_mqtt.protocol import (JobBinding, JobSource, SourceKind,  # noqa: E402
                                    TopicKind)
from gym_raas_mqtt.results import episode_slices, read_telemetry_csv  # noqa: E402
from tests.fleet_node.motor.motor_fixtures import Probe  # noqa: E402

minari = pytest.importorskip("minari", reason='the dataset extra: pip install ".[dataset]"')
pytestmark = pytest.mark.broker
LENGTHS = (30, 45)  # steps of the two episodes the controller plays
JOB = "0123456789abcdef"


class Recording:
    """What the controller saw, and the bundle the node built from its telemetry."""

    bundle: Path
    actions: list[list[np.ndarray]]
    observations: list[list[np.ndarray]]
    rewards: list[list[float]]
    infos: list[list[dict[str, Any]]]


@pytest.fixture(scope="module")
def recording(local_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """Play two episodes on a lockstep simulated motor node bound to job ``JOB``."""
    tmp = tmp_path_factory.mktemp("dataset")
    node_id = f"ds{time.monotonic_ns() % 10**9}"
    adm = local_broker.admin
    address = local_broker.unix_address(adm.username, adm.password)
    node = MotorNode(MotorConfig(node_id=node_id, data_dir=tmp, lockstep=True),
                     address=address).start()
    probe = Probe(address, node_id)
    rec = Recording()
    rec.actions, rec.observations, rec.rewards, rec.infos = [], [], [], []
    try:
        probe.subscribe(TopicKind.ENV_MOTOR_STATE)
        probe.publish(TopicKind.ENV_JOB, JobBinding(time.time(), JOB, "alice"), retain=True)
        probe.get(TopicKind.ENV_MOTOR_STATE, where=lambda m: m.job_id == JOB)
        cfg = BusConfig(mqtt_url=address.url(), node_id=node_id, username=address.username,
                        password=address.password)
        env = gym.make("RaasPendulum-v0", backend=BusBackend(cfg), max_episode_steps=1000)
        rng = np.random.default_rng(3)
        for seed, n in zip((5, 6), LENGTHS):
            obs, _ = env.reset(seed=seed)
            acts, seen, rewards, infos = [], [obs], [], []
            for _ in range(n):  # some actions beyond ±2: the env clips them, so does the record
                a = rng.uniform(-2.6, 2.6, (1,)).astype(np.float32)
                obs, r, _, _, info = env.step(a)
                acts.append(a)
                seen.append(obs)
                rewards.append(r)
                infos.append(info)
            rec.actions.append(acts)
            rec.observations.append(seen)
            rec.rewards.append(rewards)
            rec.infos.append(infos)
        env.close()
        probe.publish(TopicKind.ENV_JOB, JobBinding(time.time(), None), retain=True)
        probe.get(TopicKind.ENV_MOTOR_STATE, where=lambda m: m.job_id is None)
    finally:
        probe.client.publish(probe.topic(TopicKind.ENV_JOB), b"", qos=1,
                             retain=True).wait_for_publish(5)
        probe.close()
        node.close()
    rec.bundle = tmp / "bundle"
    build_bundle(rec.bundle, telemetry_path=telemetry_path(tmp, JOB), stdout_path=None,
                 plot=False, job_id=JOB, owner="alice", node_id=node_id, state="succeeded",
                 reason=None, calibration_id="default-2026")
    return rec


def load(root: Path, dataset_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return minari.load_dataset(dataset_id)


def check_episodes(episodes: list[Any], rec: Recording) -> None:
    """The dataset's episodes equal the telemetry, and what the controller saw."""
    tel = read_telemetry_csv(rec.bundle / "telemetry.csv")
    slices = [s for _, s in episode_slices(tel)]
    assert [len(e) for e in episodes] == [s.stop - s.start for s in slices] == list(LENGTHS)
    for ep, s, acts, seen, rewards, infos in zip(episodes, slices, rec.actions,
                                                 rec.observations, rec.rewards, rec.infos):
        n = s.stop - s.start
        assert ep.observations.shape == (n + 1, 3) and ep.actions.shape == (n, 1)
        np.testing.assert_array_equal(ep.observations[:-1], observe(tel.theta[s],
                                                                    tel.theta_dot[s]))
        np.testing.assert_array_equal(ep.observations[:-1], np.array(seen[:-1]))
        # the last observation is not in the record: predicted by the model, ≈ what was seen
        np.testing.assert_allclose(ep.observations[-1], seen[-1], atol=1e-5)
        assert list(ep.infos["predicted"]) == [False] * n + [True]
        np.testing.assert_array_equal(ep.actions[:, 0], np.clip([a[0] for a in acts], -2, 2))
        np.testing.assert_array_equal(ep.rewards, tel.reward[s])
        np.testing.assert_array_equal(ep.rewards, np.array(rewards))
        assert not ep.terminations.any() and list(ep.truncations) == [False] * (n - 1) + [True]
        np.testing.assert_array_equal(ep.infos["u_applied"][1:], [i["u_applied"] for i in infos])
        np.testing.assert_array_equal(ep.infos["t"][:-1], tel.t[s])
        assert not ep.infos["deadline_miss"].any()


def test_export_a_bundle_folder_round_trips(recording: Recording, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    root = tmp_path / "datasets"
    code = main(["dataset", "export", str(recording.bundle), "-o", str(root),
                 "--id", "raas/test/folder-v0", "--author", "alice"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"wrote 2 episodes ({sum(LENGTHS)} steps)" in out and "MINARI_DATASETS_PATH=" in out
    ds = load(root, "raas/test/folder-v0", monkeypatch)
    assert (ds.total_episodes, ds.total_steps) == (2, sum(LENGTHS))
    assert ds.spec.env_spec.id == "RaasPendulum-v0"
    check_episodes(list(ds.iterate_episodes()), recording)
    [job] = ds.storage.metadata["raas"]["jobs"]
    assert (job["job_id"], job["calibration_id"], job["dataset_episodes"],
            job["episode_ids"]) == (JOB, "default-2026", [0, 2], [1, 2])
    env = ds.recover_environment()  # the simulated env researchers train against
    assert env.observation_space.contains(ds[0].observations[0])
    env.close()
    code = main(["dataset", "export", str(recording.bundle), "-o", str(root),
                 "--id", "raas/test/folder-v0"])
    assert code == 1 and "exists" in capsys.readouterr().err


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    cfg = make_config(tmp_path)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    with BackgroundServer(app, threads=4) as server:
        user = make_user(app, "alice")
        monkeypatch.setenv("RAAS_API_URL", server.url)
        monkeypatch.setenv("RAAS_API_TOKEN", user.token)
        server.cfg = cfg
        yield server


def test_export_jobs_through_the_api(recording: Recording, dash: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    src = JobSource(SourceKind.GIT, url="https://example.org/c.git")
    with database.connection_context():
        queue.ensure_owner("alice")
        done = queue.enqueue("alice", src, 10, limits=queue.QueueLimits()).id
        run_job_to_end(done, dash.cfg.store_url, tmp_path,
                       telemetry=recording.bundle / "telemetry.csv")
        waiting = queue.enqueue("alice", src, 10, limits=queue.QueueLimits()).id
    root = tmp_path / "datasets"
    code = main(["dataset", "export", waiting, "-o", str(root)])
    assert code == 1 and f"job {waiting} has no telemetry (state queued)" in \
        capsys.readouterr().err
    code = main(["dataset", "export", done, str(recording.bundle), "-o", str(root)])
    assert code == 0, capsys.readouterr()
    ds = load(root, "raas/pendulum/jobs-v0", monkeypatch)
    episodes = list(ds.iterate_episodes())
    assert ds.total_episodes == 4
    check_episodes(episodes[:2], recording)  # downloaded through the API
    check_episodes(episodes[2:], recording)  # the local folder
    assert [j["job_id"] for j in ds.storage.metadata["raas"]["jobs"]] == [done, JOB]


def test_bad_input_is_one_line(recording: Recording, tmp_path: Path, capsys: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    code = main(["dataset", "export", str(recording.bundle), "-o", str(tmp_path),
                 "--id", "../../escape-v0"])
    assert code == 1 and "must look like namespace/name-v0" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["dataset", "export", str(empty), "-o", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot read telemetry" in err and "Traceback" not in err
    monkeypatch.setattr("gym_raas_mqtt.cli.dataset.find_spec", lambda name: None)
    code = main(["dataset", "export", str(recording.bundle), "-o", str(tmp_path / "d")])
    assert code == 3 and 'pip install "gym-raas-mqtt[dataset]"' in capsys.readouterr().err
