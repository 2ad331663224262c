"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by playwright): log in,
submit a job, watch the live chart and pendulum move while this test plays the dispatcher and a
motor node on the real broker, then see the result bundle. Screenshots go to test-artifacts/."""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from dashboard_helpers import QUEUE_LIMITS, make_user
from dispatcher import nodes, queue
from dispatcher.models import Node, database
from gym_raas_mqtt import protocol
from gym_raas_mqtt.physics import PendulumParams, angle_normalize, reward, step
from gym_raas_mqtt.protocol import (JobState, JobStatus, LogChunk, LogStream, NodeMeta, NodeState,
                                    NodeStatus, TelemetryBatch, TopicKind)
from fleet_node.bundle import build_bundle, upload_bundle
from raas_platform.storage import open_store

pytestmark = [pytest.mark.browser, pytest.mark.broker]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class FakeNode:
    """Publishes what a node's motor node and agent publish for a running job: a swing-up
    controller's telemetry in 5-step batches at 20 Hz, and log lines."""

    def __init__(self, pub: Any, owner: str, job: str, node: str) -> None:
        self.pub, self.owner, self.job, self.node = pub, owner, job, node
        self.stop = threading.Event()
        self.rows: list[tuple] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        """Energy-pumping swing-up, then a PD hand-off near upright (as the examples do)."""
        p = PendulumParams()
        theta, theta_dot, seq = math.pi - 0.05, 0.0, 0
        topic = protocol.topic(TopicKind.JOB_TELEMETRY, owner=self.owner, job=self.job)
        while not self.stop.is_set():
            cols: dict[str, list] = {c: [] for c in protocol.TELEMETRY_COLUMNS}
            for _ in range(5):
                wrapped = angle_normalize(theta)
                if math.cos(wrapped) > 0.85:
                    u = max(-2.0, min(2.0, -10 * wrapped - 2 * theta_dot))
                else:
                    u = 2.0 if theta_dot >= 0 else -2.0
                row = (seq, seq * p.dt, theta, theta_dot, u, u, reward(theta, theta_dot, u),
                       False)
                for c, v in zip(protocol.TELEMETRY_COLUMNS, row):
                    cols[c].append(v)
                self.rows.append(row)
                theta, theta_dot = step(p, theta, theta_dot, u)
                seq += 1
            batch = TelemetryBatch(job_id=self.job, node_id=self.node, episode_id=1,
                                   **{c: tuple(v) for c, v in cols.items()})
            self.pub.publish(topic, batch.to_bytes(), qos=0)
            if seq % 40 == 0:
                self.pub.publish(protocol.topic(TopicKind.JOB_LOG, owner=self.owner, job=self.job),
                                 LogChunk(job_id=self.job, stream=LogStream.STDOUT, seq=seq,
                                          lines=(f"step {seq}: theta={wrapped:+.2f}",)).to_bytes())
            time.sleep(5 * p.dt)  # real time: 20 Hz in batches of 5

    def write_csv(self, path: Path) -> None:
        """The motor node's recording of what it published (the bundle's telemetry.csv)."""
        lines = ["episode_id," + ",".join(protocol.TELEMETRY_COLUMNS)]
        lines += ["1," + ",".join(str(int(v)) if isinstance(v, bool) else repr(v) for v in r)
                  for r in self.rows]
        path.write_text("\n".join(lines) + "\n")


def until(page: Any, condition: Any, timeout_s: float = 5.0, what: str = "") -> None:
    """Poll ``condition()`` (playwright's wait_for_function evaluates strings, which the
    dashboard's Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        page.wait_for_timeout(50)


def step_shown(page: Any) -> int:
    import re

    m = re.search(r"step (\d+)", page.inner_text("#live-readout"))
    return int(m.group(1)) if m else -1


def open_page(browser: Any) -> tuple[Any, Any, list[str]]:
    """A fresh browser context and page, and the list its script errors are collected in."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return context, page, errors


def publish_state(live: Any, owner: str, job: str, state: JobState, node: str) -> None:
    live.pub.publish(protocol.topic(TopicKind.JOB_STATE, owner=owner, job=job),
                     JobStatus(job_id=job, owner=owner, state=state, ts=time.time(), execution=1,
                               node_id=node).to_bytes(), qos=1, retain=True)


def test_submit_watch_live_and_see_results(live: Any, browser: Any, uid: str,
                                           tmp_path: Path) -> None:
    user = make_user(live.app, uid)
    node = f"{uid}n"
    context, page, errors = open_page(browser)

    # log in and submit (first a bad URL: the form explains what is wrong)
    page.goto(live.url + "/jobs")
    assert "/login" in page.url
    page.fill("input[name=username]", user.name)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")
    page.click("text=Submit")
    page.fill("input[name=url]", "--upload-pack=touch /tmp/x")
    page.click("#submit-form button[type=submit]")
    assert "must not start with '-'" in page.inner_text("#submit-error")
    shot(page, "submit-error")
    errors.clear()  # the 400 of that refused form is expected
    page.fill("input[name=url]", "https://github.com/raas/swing-up.git")
    page.fill("input[name=ref]", "main")
    page.fill("input[name=time_limit_s]", "30")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/jobs/*")
    job = page.get_attribute("#job", "data-job")
    assert page.inner_text("#job-state") == "queued"
    assert page.inner_text("#job-queue") == "1"

    # the fleet announces a node; the dispatcher assigns and the node starts the job
    live.pub.publish(protocol.topic(TopicKind.NODE_META, node=node),
                     NodeMeta(backend="sim", software_version="0.1.0", calibration_id="cal-sim-1",
                              ts=time.time()).to_bytes(), qos=1, retain=True)
    live.pub.publish(protocol.topic(TopicKind.NODE_STATE, node=node),
                     NodeState(state=NodeStatus.BUSY, session=1, ts=time.time(),
                               job_id=job).to_bytes(), qos=1, retain=True)
    with database.connection_context():
        queue.assign(job, node, limits=QUEUE_LIMITS)
        queue.start(job, 1, limits=QUEUE_LIMITS)
    publish_state(live, user.name, job, JobState.RUNNING, node)
    until(page, lambda: page.inner_text("#job-state") == "running", what="running badge")
    fake = FakeNode(live.pub, user.name, job, node)
    fake.thread.start()
    try:
        until(page, lambda: step_shown(page) >= 40, 10.0, "live telemetry in the page")
        first = page.inner_text("#live-readout")
        page.wait_for_timeout(600)
        assert page.inner_text("#live-readout") != first  # it keeps moving
        until(page, lambda: step_shown(page) >= 150, 15.0, "swing-up and balance")
        assert "step 40: theta=" in page.inner_text("#log")
        # the chart's canvases (the chart component: one per quantity) have been drawn on
        inked = page.evaluate("""() => [...document.querySelectorAll('#chart canvas')].reduce(
            (n, c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n; }, 0)""")
        assert inked > 5000
        shot(page, "job-running")
    finally:
        fake.stop.set()
        fake.thread.join()

    # the jobs list and the fleet page show the live state
    page.goto(live.url + "/jobs")
    assert "running" in page.inner_text(f"tr[data-job='{job}']")
    shot(page, "jobs")
    page.goto(live.url + "/fleet")
    card = f".node[data-node='{node}']"
    page.wait_for_selector(card)
    assert page.inner_text(f"{card} [data-field=state]") == "busy"
    assert page.inner_text(f"{card} [data-field=calibration_id]") == "cal-sim-1"
    live.pub.publish(protocol.topic(TopicKind.NODE_STATE, node=node),
                     NodeState(state=NodeStatus.MAINTENANCE, session=1, ts=time.time(),
                               reason="self-test failed").to_bytes(), qos=1, retain=True)
    until(page, lambda: page.inner_text(f"{card} [data-field=state]") == "maintenance",
          what="node state update")
    shot(page, "fleet")

    # the account page tells how to read the job topics directly and issues a broker login
    page.goto(live.url + "/account")
    assert f"raas/v1/jobs/{user.name}/+/#" in page.inner_text("#mosquitto-sub")
    page.click("text=Issue my broker password")
    assert f"user-{user.name}" in page.inner_text("#broker-password")
    shot(page, "account")

    # the node uploads the bundle and reports; the job page reloads into the results while the
    # jobs list (another tab) updates its badge live
    jobs_tab = page.context.new_page()
    jobs_tab.goto(live.url + "/jobs")
    page.goto(live.url + f"/jobs/{job}")
    tel, log = tmp_path / "t.csv", tmp_path / "o.log"
    fake.write_csv(tel)
    log.write_text("swing-up done\n")
    summary = build_bundle(tmp_path / "b", telemetry_path=tel, stdout_path=log, job_id=job,
                           owner=user.name, node_id=node, state="succeeded", reason=None,
                           commit_sha="9f2c1e7" + "0" * 33, image_digest="sha256:" + "7e" * 32,
                           calibration_id="cal-sim-1", duration_s=10.0)
    prefix = upload_bundle(open_store(live.cfg.store_url), job, tmp_path / "b")
    with database.connection_context():
        queue.finish(job, 1, JobState.SUCCEEDED, {"result_key": prefix, "summary": summary,
                                                  "commit_sha": summary["commit_sha"]})
    publish_state(live, user.name, job, JobState.SUCCEEDED, node)
    badge = f"tr[data-job='{job}'] .badge"
    until(jobs_tab, lambda: jobs_tab.inner_text(badge) == "succeeded", what="jobs list badge")
    jobs_tab.close()
    page.wait_for_selector("#summary", timeout=8000)
    until(page, lambda: page.evaluate("document.getElementById('plot').naturalWidth") > 100,
          what="plot.png loaded")
    assert "9f2c1e7" in page.inner_text("#summary")
    assert "cal-sim-1" in page.inner_text("#summary")
    assert page.inner_text("#job-state") == "succeeded"
    names = page.eval_on_selector_all("#results ul.files a", "els => els.map(e => e.textContent)")
    assert sorted(names) == ["plot.png", "stdout.log", "summary.json", "telemetry.csv"]
    assert "swing-up done" in page.inner_text("#log")
    shot(page, "job-results")
    assert not errors, errors
    context.close()


def test_fleet_health_moves_live_and_an_operator_drains(live: Any, browser: Any,
                                                        uid: str) -> None:
    """The fleet page: run hours and self-tests from the dispatcher's record, "last seen" moving
    with the node's heartbeats, and an admin's drain / resume button."""
    admin = make_user(live.app, f"{uid}op", admin=True)
    node = f"{uid}f"
    with database.connection_context():
        reg = nodes.NodeRegistry()
        reg.note(node, state="idle", session=1, last_seen=time.time() - 60)
        reg.flush()
        nodes.add_run_seconds(node, 7200.0)
        nodes.record_selftest(node, True, {}, at=time.time() - 30, duration_s=4.0,
                              max_error_rad=0.0123, rms_error_rad=0.0042)
    live.pub.publish(protocol.topic(TopicKind.NODE_STATE, node=node),
                     NodeState(state=NodeStatus.IDLE, session=1, ts=time.time()).to_bytes(),
                     qos=1, retain=True)
    context, page, errors = open_page(browser)
    page.goto(live.url + "/fleet")
    page.fill("input[name=username]", admin.name)
    page.fill("input[name=password]", admin.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/fleet")
    card = f".node[data-node='{node}']"
    page.wait_for_selector(card)
    assert page.inner_text(f"{card} [data-field=run_hours]") == "2.000"
    assert "0.0123" in page.inner_text(f"{card} table.selftests")
    seen = f"{card} [data-field=last_seen]"
    until(page, lambda: page.get_attribute(seen, "data-ts"), what="last seen")
    first = float(page.get_attribute(seen, "data-ts"))
    for k in (1, 2):
        live.pub.publish(protocol.topic(TopicKind.NODE_HEARTBEAT, node=node),
                         protocol.NodeHeartbeat(session=1, ts=first + k).to_bytes())
        until(page, lambda k=k: float(page.get_attribute(seen, "data-ts")) == first + k,
              what="last seen following the heartbeats")
    page.click(f"{card} button[data-action=drain]")
    page.wait_for_selector(f"{card} [data-field=draining]")
    with database.connection_context():
        assert Node.get_by_id(node).draining
    shot(page, "fleet-health")
    page.click(f"{card} button[data-action=resume]")
    page.wait_for_selector(f"{card} button[data-action=drain]")
    with database.connection_context():
        assert not Node.get_by_id(node).draining
    live.pub.publish(protocol.topic(TopicKind.NODE_STATE, node=node), b"", qos=1, retain=True)
    assert not errors, errors
    context.close()
