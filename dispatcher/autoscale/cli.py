"""``raas fleet``: export the fleet's trace from the dispatcher's database, and plan a fleet on it.

``raas fleet trace --since DATE [--until DATE] -o trace.csv`` writes the trace
(:mod:`dispatcher.autoscale.trace`, format :mod:`gym_raas_mqtt.scaling.trace`);
``raas fleet plan --trace FILE --slo-wait 60 --quantile 0.95 [-o plan.png]`` replays it with
:func:`gym_raas_mqtt.scaling.plan.plan_fleet` and prints the smallest fleet and the best
built-in policy that meet the waiting-time objective.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from dispatcher.config import DispatcherConfig
from gym_raas_mqtt.config import load
from gym_raas_mqtt.errors import RaasError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fleet`` group (``trace``, ``plan``) to the ``raas`` parser."""
    p = sub.add_parser("fleet", help="fleet capacity: export a trace, plan a fleet on it",
                       description="Export what the fleet saw (arrivals, run times, boots, "
                                   "resets, self-tests, failures) and plan a fleet on it.")
    group = p.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)
    t = group.add_parser("trace", help="export the fleet trace from the dispatcher's database",
                         description="Write the trace CSV of a period (docs/capacity.md).")
    t.add_argument("--since", required=True, type=when,
                   help="start (ISO 8601 date or time; local time unless it has a zone)")
    t.add_argument("--until", type=when, help="end (default: now)")
    t.add_argument("-o", "--output", required=True, help="the CSV file to write ('-': stdout)")
    t.add_argument("--database-url", help="override RAAS_DATABASE_URL")
    t.set_defaults(func=run_trace)
    pl = group.add_parser("plan", help="the smallest fleet and best policy meeting an SLO",
                          description="Replay a trace on fleets of several sizes with every "
                                      "built-in policy; print the smallest fleet whose wait "
                                      "quantile meets the objective.")
    pl.add_argument("--trace", required=True, help="a trace CSV (raas fleet trace)")
    pl.add_argument("--slo-wait", type=positive, default=60.0,
                    help="the waiting-time objective [s] (default 60)")
    pl.add_argument("--quantile", type=fraction, default=0.95,
                    help="the wait quantile that must meet it, in (0, 1) (default 0.95)")
    pl.add_argument("--sizes", type=sizes,
                    help="fleet sizes to try, e.g. 2-8 or 2,4,6 (default: around the offered "
                         "load)")
    pl.add_argument("--seed", type=int, default=0, help="random seed of the replay")
    pl.add_argument("-o", "--output", help="also draw the plan (PNG: wait quantile and cost "
                                           "against fleet size)")
    pl.set_defaults(func=run_plan)


def when(text: str) -> datetime:
    """An ISO 8601 date or time (argparse type); a time without a zone is local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return value.astimezone() if value.tzinfo is None else value


def positive(text: str) -> float:
    """A number > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def sizes(text: str) -> list[int]:
    """Fleet sizes ``A-B`` or ``A,B,...``, each 1..1000 (argparse type)."""
    try:
        if "-" in text:
            low, high = (int(p) for p in text.split("-", 1))
            values = list(range(low, high + 1))
        else:
            values = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B or A,B,...: {text!r}") from None
    if not values or len(values) > 200 or not all(1 <= v <= 1000 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be 1..1000, at most 200 of them: {text!r}")
    return values


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (argparse type)."""
    value = positive(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def run_trace(args: argparse.Namespace) -> int:
    """``raas fleet trace``: write the trace of the period."""
    # peewee loads here, not when `raas --help` builds the parser
    from peewee import PeeweeException

    from dispatcher.autoscale.trace import trace_rows
    from dispatcher.models import init_db
    from gym_raas_mqtt.scaling.trace import write_trace

    until = args.until or datetime.now(timezone.utc)
    if until <= args.since:
        print(f"raas fleet trace: --until ({until.isoformat()}) must be after --since "
              f"({args.since.isoformat()})", file=sys.stderr)
        return 2
    overrides = {"database_url": args.database_url} if args.database_url else {}
    try:
        url = load(DispatcherConfig, **overrides).database_url
        db = init_db(url)
        with db.connection_context():
            rows = trace_rows(args.since, until)
    except (RuntimeError, PeeweeException) as e:  # RuntimeError: an unknown URL scheme
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"raas fleet trace: cannot read the database {url.split('@')[-1]}: {why}",
              file=sys.stderr)
        return 1
    try:
        n = write_trace(sys.stdout if args.output == "-" else args.output, rows)
    except (RaasError, OSError) as e:
        print(f"raas fleet trace: {e}", file=sys.stderr)
        return 1
    arrivals = sum(r.event == "arrival" for r in rows)
    print(f"wrote {n} rows ({arrivals} arrivals) to {args.output}", file=sys.stderr)
    return 0


def run_plan(args: argparse.Namespace) -> int:
    """``raas fleet plan``: print the smallest fleet and best policy meeting the objective."""
    from gym_raas_mqtt.scaling.plan import plan_fleet, plot_plan
    from gym_raas_mqtt.scaling.trace import read_trace

    try:
        trace = read_trace(args.trace)
        result = plan_fleet(trace, args.slo_wait, args.quantile, sizes=args.sizes,
                            seed=args.seed)
    except (RaasError, ValueError) as e:
        print(f"raas fleet plan: {e}", file=sys.stderr)
        return 1
    q = f"p{args.quantile * 100:g}"
    print(f"trace: {len(trace.arrival_t_s)} arrivals over {trace.span_s / 3600:.2f} h; "
          f"SLO: {q} wait ≤ {args.slo_wait:g} s")
    print(f"{'stations':>8}  {'best policy':<11}  {q + ' wait [s]':>12}  {'mean wait [s]':>13}  "
          f"{'cost':>8}  {'jobs':>5}  meets")
    for row in result.best_per_size():
        print(f"{row.size:>8}  {row.policy:<11}  {row.wait_quantile_s:>12.1f}  "
              f"{row.mean_wait_s:>13.1f}  {row.cost:>8.2f}  {row.jobs:>5}  "
              f"{'yes' if row.meets_slo else 'no'}")
    if result.size is None:
        print("no fleet size tried meets the SLO (try larger --sizes)")
    else:
        print(f"answer: {result.size} station(s) with the {result.policy!r} policy")
    if args.output:
        plot_plan(result, args.output)
        print(f"plot: {args.output}")
    return 0
