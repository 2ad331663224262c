"""The scaling observation: what a dispatcher can know of its fleet, and its normalized vector."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
"""Length of a day [s]; ``time_of_day_s`` is in ``[0, DAY_S)``."""

OBSERVATION_FIELDS = ("online", "busy", "booting", "standby", "queue", "offered_load", "wait",
                      "day_sin", "day_cos")
"""Names of the observation's entries, in order (see :func:`observe`)."""

OBSERVATION_LOW = np.array([0, 0, 0, 0, 0, 0, 0, -1, -1], dtype=np.float32)
"""Lower bounds of the observation (the env's ``Box``)."""
OBSERVATION_HIGH = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.float32)
"""Upper bounds of the observation (the env's ``Box``)."""


@dataclass(frozen=True)
class FleetSnapshot:
    """What the dispatcher can know about its fleet at one instant (the env builds the same).

    Attributes:
        queued: jobs waiting for a station [jobs].
        idle: stations online and free to take a job [stations].
        busy: stations running a job (or resetting after one) [stations].
        booting: stations on their way online: waking, resetting, self-testing [stations].
        standby: stations powered down, not assignable [stations].
        max_stations: the fleet size [stations], ≥ 1.
        arrivals_last_hour: jobs submitted in the last hour (a rate) [jobs/h].
        mean_wait_s: mean wait of the jobs started in the last window (0 if none) [s].
        time_of_day_s: local time of day [s], 0 ≤ t < 86400.
        slo_wait_s: the waiting-time objective [s], > 0.
        mean_duration_s: mean run time of a job [s], > 0.
    """

    queued: int
    idle: int
    busy: int
    booting: int
    standby: int
    max_stations: int
    arrivals_last_hour: float
    mean_wait_s: float
    time_of_day_s: float
    slo_wait_s: float
    mean_duration_s: float

    @property
    def online(self) -> int:
        """Stations online now: idle + busy [stations]."""
        return self.idle + self.busy

    @property
    def offered_load(self) -> float:
        """Offered load a = λ·E[S] [stations]: the stations the arrivals keep busy on average."""
        return self.arrivals_last_hour / 3600.0 * self.mean_duration_s


def squash(x: float, scale: float) -> float:
    """Map ``x`` ≥ 0 to ``x / (x + scale)`` in [0, 1] — invertible by :func:`unsquash`
    (negative or NaN → 0, +inf → 1)."""
    if 0.0 < x < math.inf:
        return x / (x + scale)
    return 1.0 if x == math.inf else 0.0


def unsquash(y: float, scale: float) -> float:
    """Inverse of :func:`squash`: ``scale · y / (1 − y)`` (``y`` clipped below 1)."""
    y = min(max(float(y), 0.0), 1.0 - 1e-6)
    return scale * y / (1.0 - y)


def observe(snapshot: FleetSnapshot) -> np.ndarray:
    """The normalized observation of a snapshot.

    Entries (float32 (9,), see :data:`OBSERVATION_FIELDS`), M = ``max_stations``:

    | Num | Name         | Value                                   | Range   |
    |-----|--------------|-----------------------------------------|---------|
    | 0   | online       | (idle + busy) / M                       | [0, 1]  |
    | 1   | busy         | busy / M                                | [0, 1]  |
    | 2   | booting      | booting / M (pending boots)             | [0, 1]  |
    | 3   | standby      | standby / M                             | [0, 1]  |
    | 4   | queue        | queued / (queued + M)                   | [0, 1)  |
    | 5   | offered_load | a / (a + M), a = λ·E[S] [stations]      | [0, 1)  |
    | 6   | wait         | mean_wait_s / (mean_wait_s + slo_wait_s)| [0, 1)  |
    | 7   | day_sin      | sin(2π · time_of_day_s / 86400)         | [−1, 1] |
    | 8   | day_cos      | cos(2π · time_of_day_s / 86400)         | [−1, 1] |

    Queue, offered load and wait are squashed (0.5 = one fleet's worth of jobs, a load equal to
    the fleet, a wait equal to the SLO) and :func:`unsquash` recovers them.

    Args:
        snapshot: the fleet's state.

    Returns:
        float32 (9,) observation.
    """
    m = float(max(snapshot.max_stations, 1))
    phase = 2.0 * math.pi * (snapshot.time_of_day_s % DAY_S) / DAY_S
    # clamped in Python: cheaper than numpy clipping of a 9-vector (this runs every env step)
    return np.array((
        max(0.0, min(1.0, snapshot.online / m)), max(0.0, min(1.0, snapshot.busy / m)),
        max(0.0, min(1.0, snapshot.booting / m)), max(0.0, min(1.0, snapshot.standby / m)),
        squash(snapshot.queued, m), squash(snapshot.offered_load, m),
        squash(snapshot.mean_wait_s, max(snapshot.slo_wait_s, 1e-9)),
        math.sin(phase), math.cos(phase)), dtype=np.float32)


@dataclass(frozen=True)
class Decoded:
    """An observation turned back into counts, for policies (see :func:`decode`).

    Attributes:
        online: stations online now [stations] (idle + busy).
        busy: stations busy [stations].
        booting: stations coming online [stations].
        queued: jobs waiting [jobs].
        offered_load: λ·E[S] [stations].
        wait_over_slo: mean wait / SLO (1.0 = at the objective).
    """

    online: float
    busy: float
    booting: float
    queued: float
    offered_load: float
    wait_over_slo: float

    @property
    def committed(self) -> float:
        """Stations online or coming online [stations] (what ``target_online`` counts from)."""
        return self.online + self.booting

    @property
    def utilization(self) -> float:
        """busy / online (1.0 with nothing online and jobs queued, else 0)."""
        if self.online > 0:
            return self.busy / self.online
        return 1.0 if self.queued > 0 else 0.0


def decode(observation: np.ndarray, max_stations: int) -> Decoded:
    """Recover counts from an observation of a fleet of ``max_stations``.

    Args:
        observation: float (9,) from :func:`observe`.
        max_stations: the fleet size the observation was made with [stations].

    Returns:
        The counts (floats: float32 rounding makes them approximate).
    """
    o = [float(x) for x in np.asarray(observation).reshape(-1)]
    m = float(max_stations)
    return Decoded(online=o[0] * m, busy=o[1] * m, booting=o[2] * m, queued=unsquash(o[4], m),
                   offered_load=unsquash(o[5], m), wait_over_slo=unsquash(o[6], 1.0))
