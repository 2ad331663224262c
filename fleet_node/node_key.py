"""The node's Ed25519 signing key: created once in its private state, it signs every result bundle.

The private key is a PEM file (PKCS #8, unencrypted, mode 0600) at ``RAAS_NODE_KEY_FILE``
(default ``<RAAS_DATA_DIR>/agent/node_key.pem``), made at the agent's first start and never sent
anywhere. The public key goes out in the node's retained meta
(:class:`~gym_raas_mqtt.protocol.NodeMeta` ``public_key``); the dispatcher enrolls the first one
it sees for the node id (:func:`dispatcher.nodes.enroll_key`). The layout of what is signed and
the offline verification are :mod:`gym_raas_mqtt.bundle_signature`.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gym_raas_mqtt.bundle_signature import (MANIFEST_FILE, SIGNATURE_FILE, build_manifest,
                                            encode_signature)
from gym_raas_mqtt.errors import ConfigError


class NodeKey:
    """A node's signing key.

    Args:
        private: the Ed25519 private key.
        path: where it is stored (for messages).
    """

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private
        self.path = path
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        self.public_key_b64 = base64.b64encode(raw).decode()

    @classmethod
    def load_or_create(cls, path: str | Path) -> "NodeKey":
        """Read the key at ``path``, or create it there (folder 0700, file 0600) when missing.

        Raises:
            ConfigError: the file exists but is not an Ed25519 private key, or is readable by
                others, or cannot be written.
        """
        path = Path(path)
        try:
            return cls(_read(path), path)
        except FileNotFoundError:
            pass
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
        except FileExistsError:  # another process made it first: use theirs
            return cls(_read(path), path)
        except OSError as e:
            raise ConfigError(f"cannot create the node key {path}: {e}") from e
        return cls(key, path)

    def sign(self, data: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def sign_bundle(self, folder: str | Path, node_id: str,
                    clock: Callable[[], float] = time.time) -> Path:
        """Write ``manifest.json`` and ``manifest.sig`` into a built bundle folder (after
        summary.json: the manifest hashes every file).

        Returns:
            The manifest's path.

        Raises:
            SignatureError: the folder has no readable summary.json.
        """
        folder = Path(folder)
        manifest = build_manifest(folder, node_id, clock())
        (folder / MANIFEST_FILE).write_bytes(manifest)
        (folder / SIGNATURE_FILE).write_bytes(encode_signature(self.sign(manifest)))
        return folder / MANIFEST_FILE


def _read(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``. Raises FileNotFoundError, or ConfigError for anything else wrong."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ConfigError(f"cannot read the node key {path}: {e}") from e
    if st.st_mode & 0o077:
        raise ConfigError(f"the node key {path} is readable by others (mode "
                          f"{st.st_mode & 0o777:o}): chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not a PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key
