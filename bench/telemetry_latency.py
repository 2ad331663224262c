"""Telemetry to browser: latency from a motor node's TelemetryBatch publish to the server-sent event
arriving in a real browser page.

Path measured: paho publish (QoS 0, as the motor node does) → central Mosquitto (broker_config)
→ the dashboard's single subscriber → per-stream queue → waitress → headless Chromium's
EventSource, on a logged-in job page. Publish time is taken with ``time.time()`` just before
``publish`` and arrival with ``Date.now()`` in the page's event handler: the same wall clock on one
machine (resolution 1 ms). Batches are paired by their last step number.

Run: ``.venv/bin/python bench/telemetry_latency.py [--batches 300] [--rate-hz 10] [--steps 10]``
Goal (issue 5): p95 <= 250 ms.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from broker_config.runner import start_broker
from dashboard.app import create_app
from dashboard.accounts import create_user
from dashboard.config import DashboardConfig
from dashboard.server import BackgroundServer
from dispatcher import queue
from dispatcher.models import database
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.protocol import JobSource, SourceKind, TelemetryBatch, TopicKind

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "bench-password-123"

RECORDER_JS = """(job) => new Promise((resolve, reject) => {
  window.__arrivals = [];
  const es = new EventSource('/stream?job=' + encodeURIComponent(job));
  es.addEventListener('telemetry', (e) => {
    const now = Date.now();
    const d = JSON.parse(e.data);
    window.__arrivals.push([d.seq[d.seq.length - 1], now]);
  });
  es.addEventListener('bus', () => resolve(true));
  es.onerror = () => reject(new Error('stream failed'));
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch(job: str, seq0: int, n: int) -> TelemetryBatch:
    seq = tuple(range(seq0, seq0 + n))
    return TelemetryBatch(job_id=job, node_id="bench-node", episode_id=1, seq=seq,
                          t=tuple(s * 0.05 for s in seq), theta=(0.1,) * n, theta_dot=(0.2,) * n,
                          u_desired=(0.5,) * n, u_applied=(0.5,) * n, reward=(-0.3,) * n,
                          deadline_miss=(False,) * n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=300, help="telemetry batches to publish")
    ap.add_argument("--rate-hz", type=float, default=10.0, help="batches per second")
    ap.add_argument("--steps", type=int, default=10,
                    help="steps per batch (the motor node's RAAS_MOTOR_TELEMETRY_BATCH)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="raas-bench-tel-"))
    broker = start_broker("central", tmp / "broker", port=free_port())
    try:
        cfg = DashboardConfig(database_url=f"sqlite:///{tmp / 'raas.db'}",
                              store_url=str(tmp / "store"), broker_url=broker.address().url(),
                              broker_username="dashboard",
                              broker_password_file=str(broker.secrets / "dashboard"),
                              secure_cookies=False)
        app = create_app({"RAAS_CONFIG": cfg, "SECRET_KEY": secrets.token_urlsafe(48)})
        hub = app.extensions["raas_hub"]
        with database.connection_context():
            create_user("bench", PASSWORD)
            job = queue.enqueue("bench", JobSource(SourceKind.GIT, url="https://x.org/r"), 60,
                                limits=app.extensions["raas_queue_limits"]).id
        deadline = time.monotonic() + 10
        while not hub.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        pub = mqtt.make_client(broker.admin_address)
        mqtt.connect(pub)
        pub.loop_start()
        topic = protocol.topic(TopicKind.JOB_TELEMETRY, owner="bench", job=job)
        sent: dict[int, float] = {}
        from playwright.sync_api import sync_playwright

        with BackgroundServer(app, threads=cfg.threads) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url + "/login")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/jobs")
            page.goto(f"{server.url}/jobs/{job}")  # the job page with its own live stream
            page.evaluate(RECORDER_JS, job)
            period = 1.0 / args.rate_hz
            next_t = time.monotonic()
            for i in range(args.batches):
                payload = batch(job, i * args.steps, args.steps).to_bytes()
                sent[(i + 1) * args.steps - 1] = time.time() * 1000.0
                pub.publish(topic, payload, qos=0)
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
            time.sleep(1.0)
            arrivals = page.evaluate("window.__arrivals")
            browser.close()
        pub.disconnect()
        pub.loop_stop()
        app.extensions["raas_subscriber"].stop()
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    lat = np.array([now - sent[seq] for seq, now in arrivals if seq in sent])
    lost = args.batches - len(lat)
    print(f"telemetry → browser: {len(lat)} batches of {args.steps} steps at "
          f"{args.rate_hz:g} Hz, {lost} lost")
    if not len(lat):
        return 1
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    print(f"latency [ms]: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {lat.max():.1f}  "
          f"min {lat.min():.1f}")
    ok = p95 <= 250.0
    print(f"goal p95 <= 250 ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
