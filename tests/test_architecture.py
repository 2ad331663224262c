"""The architecture's rules, checked on the source: module size and purpose, docstrings, private
names, and the boundary between the researcher's distribution and the platform's."""

from __future__ import annotations

import ast
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESEARCHER = ("gym_raas_mqtt",)
PLATFORM = ("broker_config", "dashboard", "dispatcher", "fleet_node", "raas_platform",
            "devstack")
PACKAGES = RESEARCHER + PLATFORM
MAX_LINES = 400


def modules(packages=PACKAGES) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py")
                  if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_modules_are_small_and_say_what_they_own():
    problems = []
    for path in modules():
        text = path.read_text()
        n = text.count("\n")
        if n > MAX_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {n} lines")
        doc = ast.get_docstring(tree(path))
        if not doc or not doc.splitlines()[0].strip():
            problems.append(f"{path.relative_to(ROOT)}: no opening docstring")
    assert not problems, "\n".join(problems)


def _public_defs(node: ast.AST, prefix: str = ""):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = child.name
            if name.startswith("_") or (name == "Meta" and prefix):  # peewee's options
                continue
            yield f"{prefix}{name}", child
            if isinstance(child, ast.ClassDef):
                yield from _public_defs(child, f"{prefix}{name}.")


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for path in modules():
        for qualname, node in _public_defs(tree(path)):
            if ast.get_docstring(node) is None:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {qualname}")
    assert not missing, f"{len(missing)} without a docstring:\n" + "\n".join(missing)


def _our_module(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def test_no_private_name_is_imported_across_modules():
    known = {module_name(p) for p in modules()}
    problems = []
    for path in modules():
        t = tree(path)
        imported_modules: dict[str, str] = {}  # local name → our module it names
        for node in ast.walk(t):
            if isinstance(node, ast.ImportFrom) and node.module and _our_module(node.module):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                                        f"{node.module}.{alias.name}")
                    full = f"{node.module}.{alias.name}"
                    if full in known:
                        imported_modules[alias.asname or alias.name] = full
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _our_module(alias.name) and alias.asname:
                        imported_modules[alias.asname] = alias.name
        for node in ast.walk(t):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                                f"{imported_modules[node.value.id]}.{node.attr}")
    assert not problems, "\n".join(problems)


def test_the_researchers_package_never_imports_the_platform():
    problems = []
    for path in modules(RESEARCHER):
        for node in ast.walk(tree(path)):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.split(".")[0] in PLATFORM:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not problems, "\n".join(problems)


def test_the_wire_contract_loads_neither_gymnasium_nor_numpy():
    code = ("import sys, gym_raas_mqtt.protocol, gym_raas_mqtt.mqtt; "
            "print(sorted(m for m in ('gymnasium', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    # ... and importing the package still registers the env the moment gymnasium loads
    code = ("import gym_raas_mqtt, gymnasium; "
            "print(gymnasium.make('RaasPendulum-v0').spec.max_episode_steps)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip() == "200"


@pytest.fixture(scope="module")
def researcher_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)], check=True,
                   capture_output=True)
    [wheel] = out.glob("gym_raas_mqtt-*.whl")
    return wheel


def test_pip_install_of_the_root_is_the_researchers_package_alone(researcher_wheel, tmp_path):
    with zipfile.ZipFile(researcher_wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"gym_raas_mqtt"}
    requires = sorted(line.split(":", 1)[1].split(";")[0].split(">")[0].split("<")[0].strip()
                      for line in metadata.splitlines() if line.startswith("Requires-Dist:")
                      and "extra ==" not in line)
    assert requires == ["gymnasium", "numpy", "paho-mqtt"]
    # installed into a fresh environment (its dependencies seen through this one's)
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env)
    py = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", str(researcher_wheel)], check=True, capture_output=True)
    code = ("import importlib.util as u; "
            f"print([m for m in {list(PLATFORM)!r} if u.find_spec(m) is not None])")
    out = subprocess.run([str(py), "-I", "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_module_table_of_the_architecture_doc_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "module_table.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
