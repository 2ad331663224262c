"""The dashboard's REST API from the researcher's side: the HTTP client, its settings and config
file, and packing a controller folder for upload (stdlib only).

The API address and token come from ``RAAS_API_URL`` / ``RAAS_API_TOKEN`` or from the config file
written by ``raas login`` (``~/.config/raas/config.toml``, mode 0600). Only urllib, tarfile and
tomllib are used, so the base install (gymnasium, numpy, paho-mqtt) is enough.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from gym_raas_mqtt.config import load, read_secret, setting
from gym_raas_mqtt.errors import RaasError

PACK_EXCLUDE_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".mypy_cache",
                     ".pytest_cache", "node_modules", ".tox"}
MAX_PACK_BYTES = 20 * 1024 * 1024
HTTP_TIMEOUT_S = 30.0


class ClientError(RaasError):
    """The API refused a request or could not be reached; the message says why."""


def default_config_file() -> Path:
    """``$XDG_CONFIG_HOME/raas/config.toml`` (``~/.config/raas/config.toml`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "raas" / "config.toml"


@dataclass(frozen=True)
class ClientConfig:
    """Where the API is and how to authenticate (environment wins over the config file)."""

    api_url: str | None = setting("RAAS_API_URL", None,
                                  "dashboard address, e.g. https://raas.example.org")
    api_token: str | None = setting("RAAS_API_TOKEN", None, "API token (see `raas login`)",
                                    secret=True)
    config_file: str | None = setting("RAAS_CLIENT_CONFIG", None,
                                      "config file (default ~/.config/raas/config.toml)")

    def path(self) -> Path:
        """The config file to read and write."""
        return Path(self.config_file).expanduser() if self.config_file else default_config_file()


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's settings (``api_url``, ``token``); empty when there is no file.

    Raises:
        ClientError: the file exists but cannot be read or parsed.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise ClientError(f"cannot read {path}: {e}") from e


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config_file(path: Path, api_url: str, token: str) -> None:
    """Write the config file readable by its owner only (0600, folder 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# written by `raas login`\n")
        f.write(f"api_url = {_toml_str(api_url)}\ntoken = {_toml_str(token)}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Api:
    """A tiny REST client: JSON in, JSON out, errors as :class:`ClientError`.

    Args:
        base_url: the dashboard's address (``http(s)://host[:port]``).
        token: API token or None (only ``login`` works without).
    """

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.token = token

    @classmethod
    def from_env(cls, need_token: bool = True) -> "Api":
        """The client the settings name (environment first, then the config file).

        Raises:
            ClientError: no API address, or no token when ``need_token``.
        """
        cfg = load(ClientConfig)
        file = read_config_file(cfg.path())
        url = cfg.api_url or file.get("api_url")
        token = read_secret(cfg.api_token) or file.get("token")
        if not url:
            raise ClientError("no API address: run `raas login --url URL` or set RAAS_API_URL")
        if need_token and not token:
            raise ClientError("not logged in: run `raas login` or set RAAS_API_TOKEN")
        return cls(url, token)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                content_type: str | None = None, timeout: float = HTTP_TIMEOUT_S) -> Any:
        """Send a request; returns the open response (caller reads/closes).

        Raises:
            ClientError: HTTP error (with the server's reason) or connection failure.
        """
        url = self.base + path
        req = urllib.request.Request(url, data=body, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", "raas-cli")
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            reason = e.reason
            try:
                data = json.loads(e.read() or b"{}")
                reason = data.get("reason") or reason
            except ValueError:
                pass
            raise ClientError(f"{method} {path}: HTTP {e.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ClientError(f"cannot reach {self.base}: {getattr(e, 'reason', e)}") from None

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        """Send ``payload`` as JSON (none when None) and return the decoded answer.

        Raises:
            ClientError: see :meth:`request`.
        """
        body = None if payload is None else json.dumps(payload).encode()
        with self.request(method, path, body=body,
                          content_type="application/json" if body is not None else None) as r:
            return json.loads(r.read() or b"null")

    def download(self, path: str) -> bytes:
        """The body of ``GET path`` (a result file).

        Raises:
            ClientError: see :meth:`request`.
        """
        with self.request("GET", path) as r:
            return r.read()

    def multipart(self, path: str, fields: dict[str, str], file_field: str, filename: str,
                  data: bytes) -> Any:
        """POST ``multipart/form-data`` with one file part."""
        boundary = "raas-" + uuid.uuid4().hex
        out = io.BytesIO()
        for k, v in fields.items():
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                      f"{v}\r\n".encode())
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                  f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                  .encode())
        out.write(data)
        out.write(f"\r\n--{boundary}--\r\n".encode())
        with self.request("POST", path, body=out.getvalue(),
                          content_type=f"multipart/form-data; boundary={boundary}",
                          timeout=max(HTTP_TIMEOUT_S, len(data) / 1e6)) as r:
            return json.loads(r.read())

    def events(self, query: dict[str, str], timeout: float = 60.0) -> Iterator[tuple[str, Any]]:
        """Server-sent events from ``/stream``: yields ``(event name, decoded data)``."""
        path = "/stream?" + urllib.parse.urlencode(query)
        with self.request("GET", path, timeout=timeout) as r:
            name, data = "message", []
            while True:
                raw = r.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data:
                        try:
                            yield name, json.loads("\n".join(data))
                        except ValueError:
                            pass
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())


# -- packing ---------------------------------------------------------------------------------------
def pack_directory(folder: Path, max_bytes: int = MAX_PACK_BYTES) -> bytes:
    """A .tar.gz of ``folder``'s contents (paths relative to it), skipping VCS folders, caches
    and virtualenvs; symlinks are not followed (and not included).

    Raises:
        ClientError: the archive would exceed ``max_bytes``, or ``folder`` has no run.py.
    """
    folder = folder.resolve()
    if not (folder / "run.py").is_file():
        raise ClientError(f"{folder} has no run.py at its top level (that is what the node runs)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d not in PACK_EXCLUDE_DIRS
                                 and not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_symlink() or not path.is_file() or name.endswith((".pyc", ".pyo")):
                    continue
                info = tf.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as f:
                    tf.addfile(info, f)
                if buf.tell() > max_bytes:
                    raise ClientError(f"{folder} packs to more than {max_bytes} bytes; leave data "
                                      "files out or submit a git URL")
    return buf.getvalue()
