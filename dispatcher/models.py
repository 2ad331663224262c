"""The platform's database schema (peewee) and its connection: owners, tokens, jobs, job tags,
executions, events, nodes, self-tests, rate-limit counters, fleet samples, scaling decisions,
webhooks and their deliveries.

One schema for SQLite (default, WAL) and PostgreSQL (by URL). Times are float seconds since the
epoch. Only :mod:`dispatcher.queue` changes job and execution state and only
:mod:`dispatcher.nodes` writes nodes and self-tests; the dashboard reads these tables and creates
jobs through ``dispatcher.queue.enqueue``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseError,
    DatabaseProxy,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.db_url import connect as db_connect
from playhouse.migrate import SchemaMigrator, migrate

from gym_raas_mqtt.protocol import JobState, NodeStatus

database = DatabaseProxy()

SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000,
                  "synchronous": "normal"}


class JSONField(TextField):
    """JSON stored as text (portable across SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> str | None:
        """Compact JSON text of ``value`` (None stays NULL)."""
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        """The decoded value (NULL is None)."""
        return None if value is None else json.loads(value)


def now() -> float:
    """Wall-clock time [s since the epoch] as stored in every timestamp column."""
    return time.time()


def new_job_id() -> str:
    """A fresh job id (16 hex chars; valid as a topic level and a file name)."""
    return uuid.uuid4().hex[:16]


class BaseModel(Model):
    """Every table lives in :data:`database` (bound by :func:`init_db`)."""

    class Meta:
        database = database


class Owner(BaseModel):
    """A user account. ``max_running`` caps the user's simultaneously running jobs (fair queue)."""

    name = CharField(primary_key=True, max_length=64)
    password_hash = CharField(max_length=256, null=True)
    is_admin = BooleanField(default=False)
    max_running = IntegerField(default=1)
    created_at = DoubleField(default=now)


class ApiToken(BaseModel):
    """A CLI/API token; only its SHA-256 is stored. Revoked tokens are kept (marked) so that using
    one is refused with that reason."""

    id = AutoField()
    owner = ForeignKeyField(Owner, backref="tokens", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    name = CharField(max_length=64, default="cli")
    created_at = DoubleField(default=now)
    last_used_at = DoubleField(null=True)
    expires_at = DoubleField(null=True)  # NULL only on tokens issued before tokens expired
    revoked_at = DoubleField(null=True)


RUNS_TABLE_SORT_COLUMNS = ("submitted_at", "finished_at", "name", "state", "node_id",
                           "total_return", "seconds_upright", "steps", "episodes", "duration_s",
                           "deadline_misses")
"""Job columns the runs table sorts by: each has an index on (column, id)."""


class Job(BaseModel):
    """A user's request to run code on a pendulum. ``state`` is a :class:`JobState` value."""

    id = CharField(primary_key=True, max_length=64, default=new_job_id)
    owner = ForeignKeyField(Owner, backref="jobs", on_delete="CASCADE")
    state = CharField(max_length=16, default=JobState.QUEUED.value, index=True)
    source_kind = CharField(max_length=16)  # SourceKind value
    source_url = TextField(null=True)
    source_ref = CharField(max_length=256, null=True)
    archive_key = CharField(max_length=512, null=True)
    time_limit_s = DoubleField(default=120.0)
    submitted_at = DoubleField(default=now, index=True)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    attempts = IntegerField(default=0)  # executions created so far
    max_attempts = IntegerField(default=3)
    node_id = CharField(max_length=64, null=True)  # node of the current/last execution
    commit_sha = CharField(max_length=64, null=True)
    reason = TextField(null=True)  # why it ended the way it did
    result_key = CharField(max_length=512, null=True)  # object-store prefix of the result bundle
    summary = JSONField(null=True)  # summary.json of the result bundle
    cancel_requested = BooleanField(default=False)
    # Run metadata (raas_platform.submission.metadata), set at enqueue; JobTag rows index the tags.
    name = CharField(max_length=64, null=True)
    tags = JSONField(null=True)  # list of tags, in the order given
    notes = TextField(null=True)
    args = JSONField(null=True)  # argv of run.py after its name
    env = JSONField(null=True)  # {NAME: value} for the job's container
    # The summary's figures, written with it (dispatcher.queue.transitions): the runs table sorts
    # by them. Nullable: a job has none before its bundle, and older databases gain the columns.
    total_return = DoubleField(null=True)  # the summary's "return": Σ reward
    seconds_upright = DoubleField(null=True)  # longest upright stretch [s]
    steps = IntegerField(null=True)
    episodes = IntegerField(null=True)
    duration_s = DoubleField(null=True)  # the run's wall-clock duration [s]
    deadline_misses = IntegerField(null=True)

    class Meta:
        # The fair-queue query scans queued jobs in submit order and counts active jobs per owner.
        # The runs table (dashboard.runs) pages through (column, id) in either direction.
        indexes = ((("state", "submitted_at"), False), (("owner", "state"), False),
                   *(((column, "id"), False) for column in RUNS_TABLE_SORT_COLUMNS))

    @property
    def job_state(self) -> JobState:
        """:attr:`state` as the enum."""
        return JobState(self.state)


class JobTag(BaseModel):
    """One tag of a job, so that the runs table filters by tag through an index; written with
    the job by ``dispatcher.queue.enqueue``."""

    job = ForeignKeyField(Job, backref="tag_rows", on_delete="CASCADE")
    tag = CharField(max_length=32)

    class Meta:
        primary_key = CompositeKey("job", "tag")
        indexes = ((("tag", "job"), False),)


class Execution(BaseModel):
    """One attempt of a job on one node (AWS IoT Jobs' 'job execution')."""

    id = AutoField()
    job = ForeignKeyField(Job, backref="executions", on_delete="CASCADE")
    number = IntegerField()  # 1-based attempt number
    node_id = CharField(max_length=64, index=True)
    state = CharField(max_length=16, default=JobState.ASSIGNED.value, index=True)
    version = IntegerField(default=1)  # bumped on every accepted change
    assigned_at = DoubleField(default=now)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    deadline_at = DoubleField(null=True)  # acceptance deadline, then the time-limit deadline
    reason = TextField(null=True)

    class Meta:
        indexes = ((("job", "number"), True), (("node_id", "state"), False))


class JobEvent(BaseModel):
    """An audit row per state transition, written in the same transaction as the change."""

    id = AutoField()
    job = ForeignKeyField(Job, backref="events", on_delete="CASCADE")
    execution = IntegerField(null=True)
    from_state = CharField(max_length=16, null=True)
    to_state = CharField(max_length=16)
    at = DoubleField(default=now)
    actor = CharField(max_length=64, default="dispatcher")
    reason = TextField(null=True)


class Node(BaseModel):
    """The dispatcher's view of a fleet node, rebuilt from retained messages."""

    id = CharField(primary_key=True, max_length=64)
    state = CharField(max_length=16, default=NodeStatus.OFFLINE.value)
    session = IntegerField(default=0)
    backend = CharField(max_length=16, null=True)
    software_version = CharField(max_length=64, null=True)
    calibration_id = CharField(max_length=64, null=True)
    image_digest = CharField(max_length=128, null=True)
    current_job = CharField(max_length=64, null=True)
    last_seen = DoubleField(null=True)
    suspect_since = DoubleField(null=True)  # set when a current-session `lost` arrives
    reason = TextField(null=True)  # why the node is in its state (maintenance), as it said
    draining = BooleanField(default=False)
    run_seconds = DoubleField(default=0.0)  # total job run time on this node
    # Nullable so that add_new_columns() can add them to an older database (NULL reads as 0).
    error_streak = IntegerField(null=True, default=0)  # consecutive executions ended `error`
    maintenance_reason = TextField(null=True)  # set: the dispatcher assigns nothing to it
    maintenance_since = DoubleField(null=True)
    standby = BooleanField(null=True, default=False)  # kept in standby (autoscaler, operator)
    public_key = CharField(max_length=64, null=True)  # base64 Ed25519: verifies its bundles
    public_key_at = DoubleField(null=True)  # when it was enrolled [s since the epoch]


class SelfTest(BaseModel):
    """A node's self-test result between jobs (sent by its agent, recorded by the dispatcher)."""

    id = AutoField()
    node = ForeignKeyField(Node, backref="selftests", on_delete="CASCADE")
    at = DoubleField(default=now)  # when it ended [s since the epoch]
    ok = BooleanField()
    details = JSONField(null=True)
    duration_s = DoubleField(null=True)  # how long the check took [s]
    max_error_rad = DoubleField(null=True)  # residual: largest |θ − θ_model| [rad]
    rms_error_rad = DoubleField(null=True)  # residual: RMS of θ − θ_model [rad]
    reason = TextField(null=True)  # why it failed

    class Meta:
        indexes = ((("node", "at"), False),)  # a node's history, newest first


class RateLimitCounter(BaseModel):
    """A fixed-window rate-limit counter (the dashboard's login limits), shared by every process
    that uses this database; ``key`` is the ``limits`` library's key of one limit and client."""

    key = CharField(primary_key=True, max_length=255)
    count = IntegerField(default=0)
    expires_at = DoubleField(index=True)  # end of the current window [s since the epoch]


class FleetSample(BaseModel):
    """The fleet every autoscaler interval, for the fleet page's panel (dispatcher.autoscale)."""

    t = DoubleField(index=True)  # s since the epoch
    arrivals = IntegerField()  # jobs submitted since the previous sample
    queued = IntegerField()
    idle = IntegerField()
    busy = IntegerField()
    booting = IntegerField()  # resetting, self-testing or woken and not idle yet
    standby = IntegerField()
    online = IntegerField()  # idle + busy + booting


class NodeBoot(BaseModel):
    """A node on its way online — its agent started (birth) or it was woken — for the fleet
    trace: the first passing self-test after ``at`` ends the boot (dispatcher.autoscale.trace)."""

    node_id = CharField(max_length=64)
    at = DoubleField(index=True)  # s since the epoch
    cause = CharField(max_length=8)  # birth | wake


class ScalingDecision(BaseModel):
    """One autoscaler decision and what it did (dispatcher.autoscale)."""

    t = DoubleField(index=True)  # s since the epoch
    policy = CharField(max_length=200)
    action = IntegerField()
    online = IntegerField()  # idle + busy + booting before the decision
    target = IntegerField()
    woke = JSONField(null=True)  # node ids
    slept = JSONField(null=True)  # node ids put in standby
    reason = TextField(null=True)  # why it did less than the target asked


class WebhookSecret(BaseModel):
    """A user's webhook signing key (HMAC-SHA256 of every delivery; in clear: the dispatcher
    signs with it)."""

    owner = ForeignKeyField(Owner, primary_key=True, on_delete="CASCADE")
    secret = CharField(max_length=128)
    created_at = DoubleField(default=now)


class Webhook(BaseModel):
    """A URL the platform POSTs to when one of its owner's jobs ends (dispatcher.webhooks)."""

    id = AutoField()
    owner = ForeignKeyField(Owner, backref="webhooks", on_delete="CASCADE")
    url = TextField()
    base_url = TextField(null=True)  # the dashboard's address as the user reached it (links)
    created_at = DoubleField(default=now)


class WebhookDelivery(BaseModel):
    """The webhook outbox: one row per webhook and job end, written in the transition's
    transaction; the delivery worker records each attempt here (dispatcher.webhooks.outbox)."""

    id = CharField(primary_key=True, max_length=36)  # the X-Raas-Delivery header
    webhook = ForeignKeyField(Webhook, on_delete="CASCADE")
    owner = ForeignKeyField(Owner, on_delete="CASCADE")
    job = ForeignKeyField(Job, on_delete="CASCADE")
    state = CharField(max_length=16)  # the job's terminal state
    status = CharField(max_length=16, default="pending")  # DeliveryStatus value
    created_at = DoubleField(default=now)
    attempts = IntegerField(default=0)
    next_attempt_at = DoubleField(null=True)  # NULL once delivered or given up
    last_attempt_at = DoubleField(null=True)
    last_status_code = IntegerField(null=True)
    last_error = TextField(null=True)
    body = TextField(null=True)  # built at the first attempt; retries send the same bytes

    class Meta:
        indexes = ((("status", "next_attempt_at"), False), (("owner", "created_at"), False))


ALL_MODELS = (Owner, ApiToken, Job, JobTag, Execution, JobEvent, Node, SelfTest,
              RateLimitCounter, FleetSample, NodeBoot, ScalingDecision, WebhookSecret, Webhook,
              WebhookDelivery)


def init_db(url: str, create: bool = True) -> Any:
    """Connect the models to the database at ``url`` and create missing tables.

    Args:
        url: ``sqlite:///path/to.db`` (WAL, foreign keys on) or ``postgresql://user:pw@host/db``.
        create: create missing tables.

    Returns:
        The peewee database (also bound to :data:`database`).
    """
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["pragmas"] = SQLITE_PRAGMAS
    db = db_connect(url, **kwargs)
    database.initialize(db)
    if create:
        with db.connection_context():
            add_new_columns(db)  # first: a new column's index is created with the tables
            db.create_tables(ALL_MODELS, safe=True)
    return db


def add_new_columns(db: Any) -> list[str]:
    """Add the nullable columns a model gained since its table was created (an older database).

    Services starting together may race to add a column; the loser finds it there and goes on.

    Returns:
        ``table.column`` of each column this call added.
    """
    migrator = SchemaMigrator.from_database(db)
    added = []
    for model in ALL_MODELS:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue  # created whole by create_tables
        present = {c.name for c in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name in present or not field.null:
                continue
            try:
                with db.atomic():
                    migrate(migrator.add_column(table, field.column_name, field))
            except DatabaseError:
                if field.column_name not in {c.name for c in db.get_columns(table)}:
                    raise
                continue
            added.append(f"{table}.{field.column_name}")
    return added
