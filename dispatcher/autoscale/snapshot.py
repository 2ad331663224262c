"""The fleet as the autoscaler sees it: node classes from the dispatcher's view, job figures from
one query, and the fleet samples the fleet page draws.

Node classes (nodes draining, in maintenance, suspect, offline or lost are in none of them):

=========  ===============================================================================
idle       reports ``idle``, holds nothing, not kept in standby (may be put in standby)
busy       holds an execution, reports ``busy``, or ``resetting`` after a job
booting    woken and not idle yet: still reports ``standby`` after its wake, or ``resetting``
standby    kept in standby (``Node.standby``), whatever it reports while it gets there
asleep     the standby nodes that already report ``standby`` (the ones that may be woken)
=========  ===============================================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Collection

from dispatcher import db
from dispatcher.fleet import FleetView
from gym_raas_mqtt.protocol import JobState, NodeStatus
from gym_raas_mqtt.scaling.observation import FleetSnapshot

WAIT_WINDOW_S = 600.0
"""The mean wait is over the jobs started this recently [s]."""
DURATION_WINDOW_S = 86400.0
"""The mean run time is over the executions that ended this recently [s]."""
HOUR_S = 3600.0


@dataclass
class NodeClasses:
    """Node ids by class (see the module's table)."""

    idle: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    booting: list[str] = field(default_factory=list)
    standby: list[str] = field(default_factory=list)
    asleep: list[str] = field(default_factory=list)

    @property
    def online(self) -> int:
        """Stations online or coming online: idle + busy + booting [stations]."""
        return len(self.idle) + len(self.busy) + len(self.booting)

    @property
    def size(self) -> int:
        """Stations the autoscaler manages: online + standby [stations]."""
        return self.online + len(self.standby)


def classify(fleet: FleetView, excluded: Collection[str], standby: Collection[str],
             waking: Collection[str]) -> NodeClasses:
    """Sort the fleet's nodes into :class:`NodeClasses`.

    Args:
        fleet: the dispatcher's view (presence and holdings).
        excluded: draining and maintenance nodes (left out).
        standby: nodes kept in standby (``Node.standby``).
        waking: nodes woken whose ``resetting`` is their way back, not the end of a job.
    """
    out = NodeClasses()
    for node_id, view in sorted(fleet.nodes.items()):
        state = view.state
        if view.suspect_since is not None or node_id in excluded:
            continue
        if node_id in fleet.holding or state is NodeStatus.BUSY:
            out.busy.append(node_id)
        elif node_id in standby and state in (NodeStatus.IDLE, NodeStatus.STANDBY):
            out.standby.append(node_id)
            if state is NodeStatus.STANDBY:
                out.asleep.append(node_id)
        elif state is NodeStatus.IDLE:
            out.idle.append(node_id)
        elif state is NodeStatus.STANDBY or (state is NodeStatus.RESETTING and node_id in waking):
            out.booting.append(node_id)
        elif state is NodeStatus.RESETTING:
            out.busy.append(node_id)
    return out


@dataclass(frozen=True)
class JobFigures:
    """What the job tables say about demand.

    Attributes:
        queued: jobs waiting [jobs].
        arrivals: jobs submitted since the previous sample [jobs].
        arrivals_last_hour: jobs submitted in the last hour [jobs].
        mean_wait_s: mean wait of the executions started in the last :data:`WAIT_WINDOW_S` [s]
            (submission → start; 0 when none started).
        mean_duration_s: mean run time of the executions that ended in the last
            :data:`DURATION_WINDOW_S` [s]; None when none did.
    """

    queued: int
    arrivals: int
    arrivals_last_hour: int
    mean_wait_s: float
    mean_duration_s: float | None


def job_figures(since: float, now: float) -> JobFigures:
    """Read :class:`JobFigures` in one query (``since``, ``now``: s since the epoch)."""
    row = db.execute(
        'SELECT (SELECT COUNT(*) FROM "job" WHERE "state" = ?), '
        '(SELECT COUNT(*) FROM "job" WHERE "submitted_at" > ? AND "submitted_at" <= ?), '
        '(SELECT COUNT(*) FROM "job" WHERE "submitted_at" > ?), '
        '(SELECT AVG(e."started_at" - j."submitted_at") FROM "execution" e '
        ' JOIN "job" j ON j."id" = e."job_id" WHERE e."started_at" > ?), '
        '(SELECT AVG("finished_at" - "started_at") FROM "execution" '
        ' WHERE "state" IN (?, ?, ?) AND "finished_at" > ?)',
        JobState.QUEUED.value, since, now, now - HOUR_S, now - WAIT_WINDOW_S,
        JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.TIMED_OUT.value,
        now - DURATION_WINDOW_S).fetchone()
    queued, arrivals, last_hour, wait, duration = row
    return JobFigures(int(queued), int(arrivals), int(last_hour), max(float(wait or 0.0), 0.0),
                      float(duration) if duration else None)


def time_of_day_s(now: float) -> float:
    """Local time of day of ``now`` [s since the epoch], in [0, 86400) [s]."""
    t = time.localtime(now)
    return t.tm_hour * 3600.0 + t.tm_min * 60.0 + t.tm_sec + (now % 1.0)


def fleet_snapshot(classes: NodeClasses, figures: JobFigures, now: float, *, slo_wait_s: float,
                   default_duration_s: float) -> FleetSnapshot:
    """The policy's view of the fleet (13a's :class:`FleetSnapshot`).

    Args:
        classes: the nodes by class.
        figures: the demand.
        now: s since the epoch.
        slo_wait_s: the waiting-time objective [s].
        default_duration_s: the run time assumed while no execution ended recently [s].
    """
    return FleetSnapshot(
        queued=figures.queued, idle=len(classes.idle), busy=len(classes.busy),
        booting=len(classes.booting), standby=len(classes.standby),
        max_stations=max(classes.size, 1), arrivals_last_hour=float(figures.arrivals_last_hour),
        mean_wait_s=figures.mean_wait_s, time_of_day_s=time_of_day_s(now),
        slo_wait_s=slo_wait_s, mean_duration_s=figures.mean_duration_s or default_duration_s)


def record_sample(now: float, classes: NodeClasses, figures: JobFigures,
                  keep_s: float) -> None:
    """Write one fleet sample and drop the samples and decisions older than ``keep_s`` [s]."""
    with db.transaction():
        db.execute('INSERT INTO "fleetsample" ("t", "arrivals", "queued", "idle", "busy", '
                   '"booting", "standby", "online") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                   now, figures.arrivals, figures.queued, len(classes.idle), len(classes.busy),
                   len(classes.booting), len(classes.standby), classes.online)
        db.execute('DELETE FROM "fleetsample" WHERE "t" < ?', now - keep_s)
        db.execute('DELETE FROM "scalingdecision" WHERE "t" < ?', now - keep_s)
