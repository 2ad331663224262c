"""``raas dataset export``: jobs' telemetry as a Minari dataset (needs the ``dataset`` extra).

Each JOB is a job id (its bundle's summary and telemetry are downloaded through the dashboard's
API, like ``raas results``) or a local bundle folder (what ``raas results`` wrote). The dataset
is built by :mod:`gym_raas_mqtt.dataset`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.parse
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from gym_raas_mqtt.cli.api import Api, ClientError

SUMMARY, TELEMETRY = "summary.json", "telemetry.csv"


def fetch_bundle(api: Api, job: str, into: Path) -> Path:
    """Download job ``job``'s summary and telemetry into folder ``into``; returns it.

    Raises:
        ClientError: no such job, or it has no telemetry yet.
    """
    jid = urllib.parse.quote(job, safe="")
    listing = api.json("GET", f"/api/v1/jobs/{jid}/results")
    names = {f["name"] for f in listing["files"]}
    if TELEMETRY not in names:
        raise ClientError(f"job {job} has no telemetry (state {listing.get('state')}); only "
                          "jobs that ran have some")
    into.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY, TELEMETRY):
        if name in names:
            (into / name).write_bytes(api.download(f"/api/v1/jobs/{jid}/results/{name}"))
    return into


def cmd_export(args: argparse.Namespace) -> int:
    """``raas dataset export``: write the jobs' episodes as one Minari dataset."""
    # numpy and Minari load here, not when `raas --help` builds the parser
    from gym_raas_mqtt.dataset import INSTALL_HINT, Run, write_minari
    from gym_raas_mqtt.results import ResultError, load_summary, load_telemetry

    if find_spec("minari") is None:  # say so before downloading anything
        print(f"raas: {INSTALL_HINT}", file=sys.stderr)
        return 3
    api = None
    runs = []
    with tempfile.TemporaryDirectory(prefix="raas-dataset-") as tmp:
        for n, job in enumerate(args.jobs):
            folder = Path(job).expanduser()
            local = folder.is_dir()
            if not local:
                api = api or Api.from_env()
                folder = fetch_bundle(api, job, Path(tmp) / str(n))
            try:
                summary: dict[str, Any] = (load_summary(folder)
                                           if (folder / SUMMARY).is_file() else {})
                telemetry = load_telemetry(folder)
            except ResultError as e:
                raise ClientError(f"{job}: {e}") from None
            job_id = str(summary.get("job_id") or (folder.name if local else job))
            runs.append(Run(job_id, telemetry, summary))
            print(f"{job_id}: {len(telemetry)} steps", file=sys.stderr)
    info = write_minari(runs, args.output, args.id, author=args.author)
    print(f"wrote {info['episodes']} episodes ({info['steps']} steps) to {info['path']}")
    print(f"load it: MINARI_DATASETS_PATH={Path(args.output).resolve()} python -c "
          f"\"import minari; print(minari.load_dataset('{info['dataset_id']}'))\"")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``raas dataset export`` to the ``raas`` parser."""
    p = sub.add_parser("dataset", help="export jobs' telemetry as an offline-RL dataset (Minari)")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    e = dsub.add_parser(
        "export", help="write a Minari dataset from jobs' telemetry",
        description="One Minari episode per recorded episode of every JOB (a job id, downloaded "
                    "through the API, or a bundle folder from `raas results`). Needs "
                    'pip install "gym-raas-mqtt[dataset]".')
    e.add_argument("jobs", nargs="+", metavar="JOB", help="job id or local bundle folder")
    e.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="datasets folder (load with MINARI_DATASETS_PATH=DIR)")
    e.add_argument("--id", default="raas/pendulum/jobs-v0",
                   help="Minari dataset id, namespace/name-vN (default %(default)s)")
    e.add_argument("--author", help="the dataset's author (Minari metadata)")
    e.set_defaults(func=cmd_export)
