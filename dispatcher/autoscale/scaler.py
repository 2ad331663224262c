"""The autoscaler: each interval a fleet sample, and (when on) one policy decision carried out by
waking standby nodes or putting idle nodes in standby.

One pass (:meth:`Autoscaler.run`, on the dispatcher's worker thread, queued by its own timer):
classify the nodes from the dispatcher's in-memory view (no query per node), read the demand in
one query, record the sample; then ``observe(snapshot)`` → ``policy.decide(observation)`` →
``target_online(action, online, spec)`` and act on the difference:

* **wake** (target > online): standby nodes that already report ``standby``, fewest recent
  errors first (executions ended ``error`` plus failed self-tests in the last
  ``RAAS_AUTOSCALE_ERROR_WINDOW_S``; ties: the node id). A woken node resets and passes its
  self-test before it reports ``idle``; until then it is never assigned a job.
* **standby** (target < online): idle nodes only — never a busy, draining, maintenance or
  waking node — that have been idle for ``RAAS_AUTOSCALE_HOLDOFF_S``, and only once that long
  has passed since the last wake; most recent errors first, then the longest idle.

The policy is built with an :class:`~gym_raas_mqtt.scaling.actions.ActionSpec` of the managed
fleet's size, once, and again only when that size changes (a node joins or leaves). Every
decision is recorded (``ScalingDecision``); one that asks for a change is logged in one line.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

from dispatcher import nodes
from dispatcher.autoscale.config import AutoscaleConfig
from dispatcher.autoscale.snapshot import (NodeClasses, classify, fleet_snapshot, job_figures,
                                           record_sample)
from dispatcher.fleet import FleetView
from dispatcher.health import FleetHealth
from dispatcher.models import ScalingDecision
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.scaling.actions import ActionSpec, target_online
from gym_raas_mqtt.scaling.observation import observe
from gym_raas_mqtt.scaling.policies import Policy, load_policy

log = logging.getLogger(__name__)

ACTOR = "the autoscaler"
"""Who the standby and wake commands say they came from."""


@dataclass(frozen=True)
class Decision:
    """What one pass decided and did.

    Attributes:
        t: when [s since the epoch].
        action: the policy's action index.
        online: idle + busy + booting before it [stations].
        target: the count the action asks for [stations].
        woke: nodes woken.
        slept: nodes put in standby.
        reason: why it did less than the target asked (None when it did all of it).
    """

    t: float
    action: int
    online: int
    target: int
    woke: tuple[str, ...]
    slept: tuple[str, ...]
    reason: str | None


class Autoscaler:
    """Samples the fleet and scales it; owned by the dispatcher's worker thread.

    Args:
        config: the autoscaler's settings.
        fleet: the dispatcher's view of the fleet.
        health: drain, maintenance and standby (it sends standby and wake).
        clock: wall clock [s since the epoch].
        default_duration_s: the run time assumed before any execution ended [s] (the queue's
            default time limit).

    Raises:
        ConfigError: the policy cannot be built.
    """

    def __init__(self, config: AutoscaleConfig, fleet: FleetView, health: FleetHealth,
                 clock: Callable[[], float], default_duration_s: float) -> None:
        self.config = config
        self.fleet = fleet
        self.health = health
        self.clock = clock
        self.default_duration_s = default_duration_s
        self.last: Decision | None = None
        self.waking: dict[str, float] = {}  # node → when it was woken
        self._idle_since: dict[str, float] = {}
        self._last_wake = -math.inf
        self._sampled_at: float | None = None
        self._policy: Policy | None = None
        self._spec: ActionSpec | None = None
        if config.enabled:
            self._build_policy(1)  # fail at start-up, not at the first decision

    def _build_policy(self, size: int) -> Policy:
        c = self.config
        spec = ActionSpec(mode=c.action_mode, step_k=c.step_k, max_stations=max(size, 1),
                          min_stations=min(c.min_online, max(size, 1)))
        if spec != self._spec:
            try:
                self._policy = load_policy(c.policy, action_spec=spec)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"RAAS_AUTOSCALE_POLICY={c.policy!r}: {e}") from e
            self._spec = spec
        assert self._policy is not None
        return self._policy

    def run(self) -> Decision | None:
        """One interval: record a fleet sample; when on, decide and act. Returns the decision."""
        now = self.clock()
        classes = self._classify(now)
        since = self._sampled_at if self._sampled_at is not None else now - self.config.interval_s
        figures = job_figures(since, now)
        self._sampled_at = now
        record_sample(now, classes, figures, self.config.samples_keep_s)
        if not self.config.enabled or classes.size == 0:
            return None
        policy = self._build_policy(classes.size)
        snapshot = fleet_snapshot(classes, figures, now, slo_wait_s=self.config.slo_wait_s,
                                  default_duration_s=self.default_duration_s)
        action = int(policy.decide(observe(snapshot)))
        assert self._spec is not None
        target = target_online(action, classes.online, self._spec)
        decision = self._act(now, action, target, classes)
        self.last = decision
        ScalingDecision.create(t=now, policy=self.config.policy[:200], action=action,
                               online=classes.online, target=target, woke=list(decision.woke),
                               slept=list(decision.slept), reason=decision.reason)
        if target != classes.online:
            log.info("autoscale: %s → action %d, online %d → target %d: woke %s, standby %s%s",
                     self.config.policy, action, classes.online, target,
                     list(decision.woke) or "none", list(decision.slept) or "none",
                     f" ({decision.reason})" if decision.reason else "")
        return decision

    def _classify(self, now: float) -> NodeClasses:
        classes = classify(self.fleet, self.health.draining | set(self.health.held),
                           self.health.standby, self.waking)
        booting = set(classes.booting)
        self.waking = {n: t for n, t in self.waking.items() if n in booting}
        self._idle_since = {n: self._idle_since.get(n, now) for n in classes.idle}
        return classes

    def _act(self, now: float, action: int, target: int, classes: NodeClasses) -> Decision:
        online, reason = classes.online, None
        woke: list[str] = []
        slept: list[str] = []
        if target > online:
            errors = nodes.recent_errors(now - self.config.error_window_s)
            order = sorted(classes.asleep, key=lambda n: (errors.get(n, 0), n))
            woke = order[:target - online]
            if woke:
                self.health.set_standby(woke, False, f"woken by {ACTOR}")
                self.waking.update({n: now for n in woke})
                self._last_wake = now
            if len(woke) < target - online:
                reason = f"only {len(woke)} node(s) in standby to wake"
        elif target < online:
            hold = self.config.holdoff_s
            ready = [n for n in classes.idle if now - self._idle_since[n] >= hold]
            if now - self._last_wake < hold:
                reason, ready = f"hold-off: last wake {now - self._last_wake:.0f} s ago", []
            errors = nodes.recent_errors(now - self.config.error_window_s) if ready else {}
            order = sorted(ready, key=lambda n: (-errors.get(n, 0), self._idle_since[n], n))
            slept = order[:online - target]
            if slept:
                self.health.set_standby(slept, True, f"standby by {ACTOR}")
            if len(slept) < online - target and reason is None:
                reason = f"{len(slept)} idle node(s) past the hold-off of {hold:g} s"
        return Decision(now, action, online, target, tuple(woke), tuple(slept), reason)
