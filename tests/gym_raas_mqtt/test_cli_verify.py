"""``raas verify`` against a served dashboard: fetch the fleet's keys once, download a signed
bundle with ``raas results``, verify it offline; a changed file makes it exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.gym_raas_mqtt.test_cli_client import dash, login, raas  # noqa: F401 - fixture
from dispatcher import nodes
from dispatcher.models import database
from fleet_node.node_key import NodeKey
from test_fleet_keys import signed_job  # tests/dashboard: on sys.path (test_cli_client)


def test_fetch_keys_download_and_verify(dash: Any, capsys: pytest.CaptureFixture,  # noqa: F811
                                        tmp_path: Path) -> None:
    login(dash, capsys)
    key = NodeKey.load_or_create(tmp_path / "node_key.pem")
    with database.connection_context():
        nodes.enroll_key("pi-v", key.public_key_b64, 7.0)
    job = signed_job(dash.app, "alice", "pi-v", key, tmp_path)
    keys = tmp_path / "keys" / "fleet.json"
    code, out, _ = raas(capsys, "verify", "--fetch-keys", str(keys))
    assert code == 0 and out.strip() == f"{keys}: 1 node key(s)"
    assert json.loads(keys.read_text())["nodes"]["pi-v"]["public_key"] == key.public_key_b64
    bundle = tmp_path / "res"
    assert raas(capsys, "results", job, "-o", str(bundle))[0] == 0
    code, out, _ = raas(capsys, "verify", str(bundle), "--keys", str(keys))
    assert code == 0 and f"signed by node pi-v (job {job}, succeeded" in out
    (bundle / "sim_vs_real.json").write_text("{}")
    code, out, _ = raas(capsys, "verify", str(bundle), "--keys", str(keys))
    assert code == 1 and out.strip() == (f"{bundle}: sim_vs_real.json: SHA-256 differs from the "
                                         "manifest (file changed)")
