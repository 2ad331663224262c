"""Signed result bundles: the node's key (0600, made once), the manifest, and ``raas verify``
offline — an intact bundle verifies; a tampered file, summary field or manifest, another node's
signature and an unknown node are each reported in one line with exit 1."""

from __future__ import annotations

import json
import shutil
import stat
import time
import zipfile
from pathlib import Path

import pytest

from fleet_node.bundle import build_bundle
from fleet_node.node_key import NodeKey
from gym_raas_mqtt.bundle_signature import keys_document, verify_bundle, load_fleet_keys
from gym_raas_mqtt.cli import main as raas
from gym_raas_mqtt.errors import ConfigError

ROWS = "episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss\n" + "".join(
    f"1,{k},{k * 0.05!r},{3.1 - 0.01 * k!r},0.2,0.5,0.5,-1.5,0\n" for k in range(1, 41))


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, NodeKey]:
    """A signed bundle of node n1 and a fleet keys file with n1 and n2."""
    tel = tmp_path / "t.csv"
    tel.write_text(ROWS)
    key = NodeKey.load_or_create(tmp_path / "state" / "n1.pem")
    other = NodeKey.load_or_create(tmp_path / "state" / "n2.pem")
    out = tmp_path / "bundle"
    build_bundle(out, telemetry_path=tel, stdout_path=None, plot=False, job_id="job1",
                 owner="alice", node_id="n1", state="succeeded", reason=None)
    key.sign_bundle(out, "n1")
    keys = tmp_path / "fleet-keys.json"
    keys.write_text(json.dumps(keys_document({"n1": (key.public_key_b64, 1.0),
                                              "n2": (other.public_key_b64, 2.0)})))
    return out, keys, other


def verify(bundle: Path, keys: Path, capsys) -> tuple[int, list[str]]:
    code = raas(["verify", str(bundle), "--keys", str(keys)])
    return code, capsys.readouterr().out.strip().splitlines()


def test_the_key_is_private_made_once_and_refused_when_exposed(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "node_key.pem"
    key = NodeKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert NodeKey.load_or_create(path).public_key_b64 == key.public_key_b64
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        NodeKey.load_or_create(path)
    path.chmod(0o600)
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        NodeKey.load_or_create(path)


def test_an_intact_bundle_verifies_as_folder_and_zip(signed, tmp_path, capsys) -> None:
    bundle, keys, _ = signed
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == {"summary.json", "telemetry.csv", "stdout.log"}
    assert manifest["summary"]["steps"] == 40 and manifest["node_id"] == "n1"
    code, lines = verify(bundle, keys, capsys)
    assert code == 0 and lines[-1].startswith(f"{bundle}: OK — 3 files signed by node n1")
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(bundle.iterdir()):
            z.write(p, f"results-job1/{p.name}")
    assert verify(archive, keys, capsys)[0] == 0


@pytest.mark.parametrize("tamper,expected", [
    (lambda b: (b / "telemetry.csv").write_text(ROWS.replace("-1.5", "-0.5")),
     "telemetry.csv: SHA-256 differs from the manifest"),
    (lambda b: (b / "stdout.log").unlink(), "stdout.log: listed in the manifest but missing"),
    (lambda b: (b / "extra.txt").write_text("x"), "extra.txt: not in the manifest"),
    (lambda b: (b / "manifest.json").write_text(
        (b / "manifest.json").read_text().replace('"steps": 40', '"steps": 41')),
     "manifest.sig: not a signature of manifest.json by node 'n1'"),
    (lambda b: (b / "manifest.sig").unlink(), "manifest.sig missing"),
])
def test_a_tampered_file_is_detected(signed, capsys, tamper, expected) -> None:
    bundle, keys, _ = signed
    tamper(bundle)
    code, lines = verify(bundle, keys, capsys)
    assert code == 1 and any(expected in line for line in lines), lines


def test_a_changed_summary_field_is_detected_even_with_its_hash_fixed(signed, capsys) -> None:
    bundle, keys, _ = signed
    summary = json.loads((bundle / "summary.json").read_text())
    summary["return"] = 0.0  # a better-looking run
    (bundle / "summary.json").write_text(json.dumps(summary))
    code, lines = verify(bundle, keys, capsys)
    assert code == 1
    assert any("summary.json: SHA-256 differs" in line for line in lines)
    assert any("summary.json field 'return': 0.0 differs from the signed -60.0" in line
               for line in lines), lines


def test_another_nodes_key_or_an_unknown_node_fails(signed, tmp_path, capsys) -> None:
    bundle, keys, other = signed
    other.sign_bundle(bundle, "n1")  # n2 signs a manifest that claims n1
    code, lines = verify(bundle, keys, capsys)
    assert code == 1 and lines == [f"{bundle}: manifest.sig: not a signature of manifest.json "
                                   "by node 'n1' (the manifest was changed, or another key "
                                   "signed it)"]
    only_n2 = tmp_path / "n2-only.json"
    only_n2.write_text(json.dumps(keys_document({"n2": (other.public_key_b64, 2.0)})))
    code, lines = verify(bundle, only_n2, capsys)
    assert code == 1 and "node 'n1' is not in the fleet keys" in lines[0]


def test_unreadable_inputs_are_one_line_errors(signed, tmp_path, capsys) -> None:
    bundle, keys, _ = signed
    assert raas(["verify", str(tmp_path / "nope"), "--keys", str(keys)]) == 1
    assert "cannot read bundle" in capsys.readouterr().err
    bad = tmp_path / "bad-keys.json"
    bad.write_text('{"schema": 1, "nodes": {"n1": {"public_key": "abc"}}}')
    assert raas(["verify", str(bundle), "--keys", str(bad)]) == 1
    assert "node 'n1': a public key is base64 of 32 raw" in capsys.readouterr().err
    assert raas(["verify", str(bundle)]) == 1
    assert "--keys FILE" in capsys.readouterr().err
    nested, crowded = tmp_path / "nested.zip", tmp_path / "crowded.zip"
    with zipfile.ZipFile(nested, "w") as z:
        z.writestr("a/summary.json", "{}")
        z.writestr("a/b/telemetry.csv", "x")
    with zipfile.ZipFile(crowded, "w") as z:
        for i in range(101):
            z.writestr(f"f{i}.txt", "x")
    assert raas(["verify", str(nested), "--keys", str(keys)]) == 1
    assert "nested.zip: unexpected member 'a/" in capsys.readouterr().err
    assert raas(["verify", str(crowded), "--keys", str(keys)]) == 1
    assert "not a result bundle" in capsys.readouterr().err
    unsigned = tmp_path / "unsigned"
    shutil.copytree(bundle, unsigned)
    (unsigned / "manifest.json").unlink()
    assert verify(unsigned, keys, capsys) == (1, [f"{unsigned}: manifest.json missing: the "
                                                  "bundle is not signed"])


def test_signing_and_verifying_a_60_s_bundle_is_fast(signed, tmp_path) -> None:
    bundle, keys, _ = signed
    rows = "episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss\n" + "".join(
        f"1,{k},{k * 0.05!r},{3.1 - 0.001 * k!r},0.2,0.5,0.5,-1.5,0\n" for k in range(1, 1201))
    (bundle / "telemetry.csv").write_text(rows)
    key = NodeKey.load_or_create(tmp_path / "state" / "n1.pem")
    t0 = time.perf_counter()
    key.sign_bundle(bundle, "n1")
    t1 = time.perf_counter()
    _, problems = verify_bundle(bundle, load_fleet_keys(keys))
    t2 = time.perf_counter()
    assert problems == []
    assert t1 - t0 < 0.5 and t2 - t1 < 0.5, (t1 - t0, t2 - t1)
