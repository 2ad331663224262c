"""Signed result bundles: the manifest's layout, and verifying a bundle offline against the fleet's keys.

A node signs every bundle it builds: ``manifest.json`` lists the SHA-256 and size of every other
file of the bundle and repeats the summary's fields that matter (:data:`SIGNED_SUMMARY_FIELDS`);
``manifest.sig`` is the base64 Ed25519 signature of manifest.json's exact bytes by the node's key.
The fleet's public keys (``GET /api/v1/fleet/keys``, ``raas verify --fetch-keys FILE``) are
:data:`KEYS_SCHEMA` JSON: ``{"schema", "algorithm": "ed25519", "nodes": {node_id: {"public_key":
base64 of the 32 raw bytes, "enrolled_at": s since the epoch}}}``.

:func:`verify_bundle` needs ``cryptography`` (the ``verify`` extra); everything else is stdlib.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.results import SUMMARY_FILE

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
MANIFEST_SCHEMA = 1
KEYS_SCHEMA = 1
ALGORITHM = "ed25519"
SIGNED_SUMMARY_FIELDS = ("job_id", "owner", "node_id", "execution", "state", "reason",
                         "commit_sha", "image_digest", "calibration_id", "calibration_sha256",
                         "platform_version", "started_at", "finished_at", "duration_s",
                         "exit_code", "return", "steps", "episodes", "seconds_upright",
                         "deadline_misses")
"""Summary fields copied into the manifest: a verifier reports each one that differs."""
MAX_BUNDLE_FILES = 100
"""Files a bundle may hold (more: not a result bundle)."""
MAX_BUNDLE_BYTES = 1 << 30
"""Bytes a bundle may hold, unpacked (a 2-million-row telemetry file is about 200 MB)."""
PUBLIC_KEY_BYTES = 32


class SignatureError(RaasError):
    """A manifest cannot be built, or a bundle or key file cannot be read."""


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def build_manifest(folder: str | Path, node_id: str, signed_at: float) -> bytes:
    """manifest.json's bytes for the bundle in ``folder`` (every file but the manifest and its
    signature; hidden files are not part of a bundle).

    Args:
        folder: the bundle folder, with summary.json written.
        node_id: the signing node (the verifier looks its key up by this id).
        signed_at: when [s since the epoch].

    Raises:
        SignatureError: no summary.json, or it is not a JSON object.
    """
    folder = Path(folder)
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in (
                MANIFEST_FILE, SIGNATURE_FILE):
            data = path.read_bytes()
            files[path.name] = {"sha256": sha256_hex(data), "size": len(data)}
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError) as e:
        raise SignatureError(f"cannot sign {folder}: {SUMMARY_FILE}: {e}") from e
    if not isinstance(summary, dict):
        raise SignatureError(f"cannot sign {folder}: {SUMMARY_FILE} is not a JSON object")
    manifest = {"schema": MANIFEST_SCHEMA, "algorithm": ALGORITHM, "hash": "sha256",
                "node_id": node_id, "signed_at": signed_at, "files": files,
                "summary": {k: summary.get(k) for k in SIGNED_SUMMARY_FIELDS}}
    return (json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False, default=str)
            + "\n").encode()


def encode_signature(signature: bytes) -> bytes:
    """manifest.sig's bytes for a raw signature (base64, one line)."""
    return base64.b64encode(signature) + b"\n"


# ------------------------------------------------------------------------------ fleet keys
def decode_public_key(text: Any) -> bytes:
    """The 32 raw bytes of a base64 Ed25519 public key.

    Raises:
        SignatureError: not base64 of 32 bytes.
    """
    try:
        raw = base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != PUBLIC_KEY_BYTES:
        raise SignatureError("a public key is base64 of 32 raw Ed25519 bytes")
    return raw


def keys_document(keys: Mapping[str, tuple[str, float | None]]) -> dict[str, Any]:
    """The fleet keys JSON for ``{node_id: (base64 public key, enrolled_at)}``."""
    nodes = {n: {"public_key": k, "enrolled_at": at} for n, (k, at) in sorted(keys.items())}
    return {"schema": KEYS_SCHEMA, "algorithm": ALGORITHM, "nodes": nodes}


def load_fleet_keys(path: str | Path) -> dict[str, bytes]:
    """``{node_id: raw public key}`` from a fleet keys file.

    Raises:
        SignatureError: unreadable, not the keys schema, or a malformed key.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SignatureError(f"cannot read fleet keys {path}: {e}") from e
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, dict) or doc.get("schema") != KEYS_SCHEMA:
        raise SignatureError(f"{path}: not a fleet keys file (schema {KEYS_SCHEMA}, 'nodes')")
    out = {}
    for node_id, entry in nodes.items():
        try:
            out[str(node_id)] = decode_public_key((entry or {}).get("public_key"))
        except (SignatureError, AttributeError) as e:
            raise SignatureError(f"{path}: node {node_id!r}: {e}") from None
    return out


# ------------------------------------------------------------------------------ verifying
def read_bundle_files(source: str | Path) -> dict[str, bytes]:
    """Name → bytes of a bundle folder or ``.zip`` (flat, or inside one top folder).

    Raises:
        SignatureError: missing, unreadable, nested, or larger than :data:`MAX_BUNDLE_FILES`
            files or :data:`MAX_BUNDLE_BYTES` bytes.
    """
    path = Path(source)
    try:
        if path.is_dir():
            entries = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
            _check_size(path, [p.stat().st_size for p in entries])
            return {p.name: p.read_bytes() for p in entries}
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            _check_size(path, [m.file_size for m in members])
            tops = {PurePosixPath(m.filename).parts[0] for m in members}
            strip = len(tops) == 1 and all(len(PurePosixPath(m.filename).parts) == 2
                                           for m in members)
            out = {}
            for m in members:
                parts = PurePosixPath(m.filename).parts[1 if strip else 0:]
                if len(parts) != 1:
                    raise SignatureError(f"{path}: unexpected member {m.filename!r}")
                out[parts[0]] = z.read(m)
            return out
    except (OSError, zipfile.BadZipFile) as e:
        raise SignatureError(f"cannot read bundle {path}: {e}") from e


def _check_size(path: Path, sizes: list[int]) -> None:
    if len(sizes) > MAX_BUNDLE_FILES or sum(sizes) > MAX_BUNDLE_BYTES:
        raise SignatureError(f"{path}: more than {MAX_BUNDLE_FILES} files or "
                             f"{MAX_BUNDLE_BYTES} bytes: not a result bundle")


def _manifest(files: Mapping[str, bytes]) -> tuple[dict[str, Any] | None, list[str]]:
    if MANIFEST_FILE not in files:
        return None, [f"{MANIFEST_FILE} missing: the bundle is not signed"]
    try:
        m = json.loads(files[MANIFEST_FILE])
    except ValueError as e:
        return None, [f"{MANIFEST_FILE}: not JSON ({e})"]
    if (not isinstance(m, dict) or m.get("schema") != MANIFEST_SCHEMA
            or not isinstance(m.get("files"), dict) or not isinstance(m.get("summary"), dict)
            or not isinstance(m.get("node_id"), str)):
        return None, [f"{MANIFEST_FILE}: not a schema-{MANIFEST_SCHEMA} manifest"]
    return m, []


def _check_signature(files: Mapping[str, bytes], node_id: str,
                     keys: Mapping[str, bytes]) -> list[str]:
    from cryptography.exceptions import InvalidSignature  # the `verify` extra
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if node_id not in keys:
        return [f"node {node_id!r} is not in the fleet keys: fetch them again "
                "(raas verify --fetch-keys FILE) or the bundle comes from another fleet"]
    if SIGNATURE_FILE not in files:
        return [f"{SIGNATURE_FILE} missing: the bundle is not signed"]
    try:
        signature = base64.b64decode(files[SIGNATURE_FILE].strip(), validate=True)
        Ed25519PublicKey.from_public_bytes(keys[node_id]).verify(signature,
                                                                 files[MANIFEST_FILE])
    except (binascii.Error, ValueError, InvalidSignature):
        return [f"{SIGNATURE_FILE}: not a signature of {MANIFEST_FILE} by node {node_id!r} "
                "(the manifest was changed, or another key signed it)"]
    return []


def verify_files(files: Mapping[str, bytes], keys: Mapping[str, bytes]) -> list[str]:
    """Every problem of a bundle's files against the fleet's keys, one line each (empty: the
    bundle is intact and signed by the node it names).

    Args:
        files: name → bytes (:func:`read_bundle_files`).
        keys: node id → raw Ed25519 public key (:func:`load_fleet_keys`).
    """
    manifest, problems = _manifest(files)
    if manifest is None:
        return problems
    problems += _check_signature(files, manifest["node_id"], keys)
    listed = manifest["files"]
    for name in sorted(set(listed) | set(files)):
        if name in (MANIFEST_FILE, SIGNATURE_FILE):
            continue
        if name not in files:
            problems.append(f"{name}: listed in the manifest but missing")
        elif name not in listed:
            problems.append(f"{name}: not in the manifest (added after signing)")
        elif not isinstance(listed[name], dict) or listed[name].get("sha256") != sha256_hex(
                files[name]):
            problems.append(f"{name}: SHA-256 differs from the manifest (file changed)")
    try:
        summary = json.loads(files.get(SUMMARY_FILE, b"null"))
    except ValueError:
        summary = None
    if not isinstance(summary, dict):
        return problems + [f"{SUMMARY_FILE}: missing or not a JSON object"]
    for key, signed in sorted(manifest["summary"].items()):
        if summary.get(key) != signed:
            problems.append(f"{SUMMARY_FILE} field {key!r}: {summary.get(key)!r} differs from "
                            f"the signed {signed!r}")
    if summary.get("node_id") != manifest["node_id"]:
        problems.append(f"{SUMMARY_FILE}: node {summary.get('node_id')!r} but signed by "
                        f"{manifest['node_id']!r}")
    return problems


def verify_bundle(source: str | Path, keys: Mapping[str, bytes]) -> tuple[dict | None, list[str]]:
    """Verify a bundle folder or zip offline.

    Returns:
        (the manifest when it could be read, the problems: one line each, empty when valid).

    Raises:
        SignatureError: the bundle cannot be read at all.
    """
    files = read_bundle_files(source)
    manifest, _ = _manifest(files)
    return manifest, verify_files(files, keys)
