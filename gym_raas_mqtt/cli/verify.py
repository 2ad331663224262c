"""``raas verify``: check a downloaded result bundle's signature and hashes offline, and fetch the fleet's keys.

``raas verify --fetch-keys FLEET_KEYS.json`` saves the fleet's public keys from the dashboard
(``GET /api/v1/fleet/keys``); ``raas verify BUNDLE_DIR_OR_ZIP --keys FLEET_KEYS.json`` then
needs no network: it prints one line per problem and exits 1, or prints what was verified and
exits 0. Verifying needs ``cryptography`` (``pip install 'gym-raas-mqtt[verify]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from gym_raas_mqtt.cli.api import Api, ClientError

KEYS_PATH = "/api/v1/fleet/keys"


def fetch_keys(api: Api, out: Path) -> int:
    """Save the fleet's keys from ``api`` into ``out`` (atomically); returns how many.

    Raises:
        ClientError: the server is unreachable, refused, or answered something else.
    """
    from gym_raas_mqtt.bundle_signature import KEYS_SCHEMA  # numpy: not for `raas --help`

    doc = api.json("GET", KEYS_PATH)
    if not isinstance(doc, dict) or doc.get("schema") != KEYS_SCHEMA or not isinstance(
            doc.get("nodes"), dict):
        raise ClientError(f"{KEYS_PATH}: not a fleet keys document")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".keys-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    return len(doc["nodes"])


def cmd_verify(args: argparse.Namespace) -> int:
    """``raas verify``: verify a bundle offline, or fetch the fleet's keys."""
    from gym_raas_mqtt.bundle_signature import SignatureError, load_fleet_keys, verify_bundle

    if args.fetch_keys is not None:
        n = fetch_keys(Api.from_env(), Path(args.fetch_keys))
        print(f"{args.fetch_keys}: {n} node key(s)")
        if args.bundle is None:
            return 0
    if args.bundle is None:
        raise ClientError("give a bundle (folder or .zip) to verify, or --fetch-keys FILE")
    if args.keys is None and args.fetch_keys is None:
        raise ClientError("give the fleet's keys: --keys FILE (save them once with "
                          "raas verify --fetch-keys FILE)")
    try:
        keys = load_fleet_keys(args.keys or args.fetch_keys)
        manifest, problems = verify_bundle(args.bundle, keys)
    except SignatureError as e:
        print(f"raas verify: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError:
        print("raas verify: needs cryptography: pip install 'gym-raas-mqtt[verify]'",
              file=sys.stderr)
        return 3
    for line in problems:
        print(f"{args.bundle}: {line}")
    if problems:
        return 1
    assert manifest is not None  # no problems: the manifest was read
    s = manifest["summary"]
    print(f"{args.bundle}: OK — {len(manifest['files'])} files signed by node "
          f"{manifest['node_id']} (job {s.get('job_id')}, {s.get('state')}, return "
          f"{s.get('return')})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``raas verify``."""
    p = sub.add_parser("verify", help="verify a downloaded result bundle offline (signature and "
                                      "hashes), or fetch the fleet's public keys")
    p.add_argument("bundle", nargs="?", help="bundle folder (raas results) or .zip")
    p.add_argument("--keys", metavar="FILE", help="the fleet's public keys (JSON)")
    p.add_argument("--fetch-keys", metavar="FILE",
                   help="download the fleet's public keys from the dashboard into FILE first")
    p.set_defaults(func=cmd_verify)
