"""The scaling env's ``rgb_array`` panel: arrivals, queue and stations over a rolling window, and stats."""

from __future__ import annotations

from collections import deque

import numpy as np

from gym_raas_mqtt.scaling.observation import FleetSnapshot
from gym_raas_mqtt.scaling.raster import BLACK, GREEN, GREY, RED, Canvas

WINDOW_STEPS = 300
"""Steps shown (one pixel column each), as in gym-scaling's 300-pixel plot."""
PLOT_W, PLOT_H, MARGIN = WINDOW_STEPS, 250, 10
STAT_LINE_PX = 14


class History:
    """What the panel shows: the last :data:`WINDOW_STEPS` steps, plus episode totals."""

    def __init__(self) -> None:
        self.arrivals: deque[float] = deque(maxlen=WINDOW_STEPS)
        self.queued: deque[int] = deque(maxlen=WINDOW_STEPS)
        self.online: deque[int] = deque(maxlen=WINDOW_STEPS)
        self.standby: deque[int] = deque(maxlen=WINDOW_STEPS)
        self.clear()

    def clear(self) -> None:
        """Forget everything (a new episode)."""
        for series in (self.arrivals, self.queued, self.online, self.standby):
            series.clear()
        self.steps, self.reward_sum = 0, 0.0
        self.last: FleetSnapshot | None = None

    def record(self, arrivals: float, snapshot: FleetSnapshot, reward: float) -> None:
        """Append one step: jobs arrived in it, the fleet after it, its reward."""
        self.arrivals.append(arrivals)
        self.queued.append(snapshot.queued)
        self.online.append(snapshot.online + snapshot.booting)
        self.standby.append(snapshot.standby)
        self.steps += 1
        self.reward_sum += reward
        self.last = snapshot


def _series(canvas: Canvas, values: deque, top: float, color: tuple[int, int, int]) -> None:
    if not values:
        return
    v = np.asarray(values, dtype=np.float64)
    xs = MARGIN + np.arange(len(v))
    ys = MARGIN + PLOT_H - 1 - np.minimum(v / max(top, 1e-9), 1.0) * (PLOT_H - 2)
    canvas.polyline(xs, ys, color)


def stats_lines(history: History, max_stations: int, t_s: float) -> list[str]:
    """The stats block's text: step, time, mean reward, fleet state, queue, rates."""
    s = history.last
    mean_reward = history.reward_sum / history.steps if history.steps else 0.0
    lines = [f"step {history.steps}  t {t_s / 3600:.2f} h", f"avg reward {mean_reward:.4f}"]
    if s is not None:
        lines += [f"online {s.online}/{max_stations} booting {s.booting} standby {s.standby}",
                  f"busy {s.busy} idle {s.idle} queue {s.queued}",
                  (f"arrivals {s.arrivals_last_hour:.1f}/h wait {s.mean_wait_s:.0f} s "
                   f"(slo {s.slo_wait_s:.0f})")]
    return lines


def draw_panel(history: History, max_stations: int, t_s: float) -> np.ndarray:
    """gym-scaling's picture: arrivals (black), queue (red) on one scale; stations online or
    booting (green) and in standby (grey) on a 0..max_stations scale; the stats block below.

    Args:
        history: the recorded steps.
        max_stations: the fleet size (the stations' scale) [stations].
        t_s: simulated time since reset [s].

    Returns:
        uint8 (H, W, 3) RGB frame, W = 320.
    """
    lines = stats_lines(history, max_stations, t_s)
    canvas = Canvas(PLOT_W + 2 * MARGIN, PLOT_H + 2 * MARGIN + STAT_LINE_PX * 5 + 4)
    canvas.rect(MARGIN - 1, MARGIN - 1, MARGIN + PLOT_W, MARGIN + PLOT_H, BLACK)
    jobs_top = max(max(history.arrivals, default=1), max(history.queued, default=1), 1)
    _series(canvas, history.standby, max_stations, GREY)
    _series(canvas, history.online, max_stations, GREEN)
    _series(canvas, history.arrivals, jobs_top, BLACK)
    _series(canvas, history.queued, jobs_top, RED)
    canvas.text(MARGIN + 2, MARGIN + 2, f"jobs {jobs_top:g}", BLACK, scale=1)
    canvas.text(MARGIN + PLOT_W - 60, MARGIN + 2, f"stations {max_stations}", GREEN, scale=1)
    for k, line in enumerate(lines):
        canvas.text(MARGIN, PLOT_H + 2 * MARGIN + k * STAT_LINE_PX, line, BLACK, scale=2)
    return canvas.pixels
