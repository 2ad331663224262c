"""``raas user add|passwd|token`` against a stack by ``--dir``, one actionable line for a database
that cannot be used, and ``raas stack up`` saying how to create the first user (issue 14, item 9:
"`raas user add` run outside the stack prints a 40-line peewee traceback and has no --dir")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from devstack import cli as stack_cli

ROOT = Path(__file__).resolve().parents[2]


def raas(*args: str, cwd: Path, env: dict[str, str] | None = None,
         stdin: str = "") -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAAS_")}
    return subprocess.run([sys.executable, "-m", "gym_raas_mqtt.cli", *args], cwd=cwd,
                          env={**base, **(env or {})}, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_user_add_by_dir_uses_the_stacks_database(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "stack.json").write_text(json.dumps({"pids": {}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = raas("user", "add", "alice", "--dir", str(stack), cwd=elsewhere, stdin="pw-of-alice\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "created user alice"
    assert (stack / "raas.db").is_file()
    r = raas("user", "token", "alice", "--dir", str(stack), cwd=elsewhere)
    assert r.returncode == 0 and r.stdout.strip().startswith("raas_")
    r = raas("user", "passwd", "alice", "--dir", str(stack), cwd=elsewhere,
             stdin="new-password-1\n")
    assert r.returncode == 0 and "password of alice changed" in r.stdout
    r = raas("user", "add", "alice", "--dir", str(stack), cwd=elsewhere,
             stdin="another-pass-1\n")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_database_errors_are_one_actionable_line(tmp_path: Path) -> None:
    # outside a stack the default database (sqlite:///var/raas.db) is not there
    r = raas("user", "add", "alice", cwd=tmp_path, stdin="pw\n")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("raas: cannot use the job database sqlite:///var/raas.db")
    assert "--dir" in lines[0] and "RAAS_DATABASE_URL" in lines[0]
    r = raas("user", "token", "alice", cwd=tmp_path,
             env={"RAAS_DATABASE_URL": "postgresql://raas:s3cret@127.0.0.1:9/raas"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1
    assert "postgresql://raas:***@127.0.0.1:9/raas" in lines[0] and "s3cret" not in r.stderr
    r = raas("user", "add", "alice", "--dir", str(tmp_path), cwd=tmp_path, stdin="pw\n")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"raas: {tmp_path} is not a stack folder (no stack.json): give "
                                "the --dir of `raas stack up`")


def test_stack_up_says_how_to_create_the_first_user(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    class FakeStack:
        dashboard_url = "http://127.0.0.1:8080"

        def __init__(self, root: Path, **_: object) -> None:
            self.root = root

        def up(self) -> None:
            pass

    monkeypatch.setattr(stack_cli, "Stack", FakeStack)
    args = SimpleNamespace(dir="var/stack", nodes=["sim-1"], central_port=1883,
                           dashboard_port=8080)
    assert stack_cli.cmd_up(args) == 0
    out = capsys.readouterr().out
    assert "raas user add NAME --dir var/stack" in out
    assert "raas login --url http://127.0.0.1:8080" in out
