"""The runs table: one page of jobs sorted, filtered and searched by the database, for the API
(``GET /api/v1/jobs``), the jobs page and ``raas jobs``.

Sorting uses indexed columns only: the summary's figures are real columns of the job, written
with the summary by the queue (``dispatcher.queue.transitions.summary_row``), each indexed
together with the job id (``dispatcher.models.RUNS_TABLE_SORT_COLUMNS``). Jobs without a figure
(queued, running, or no telemetry) come last in either direction; ties are broken by the job id,
so the order is total and pages never overlap.

Pages are **offset** pages (``page``/``per_page``; ``limit``/``offset`` still work). Keyset
pagination would be cheaper deep in a long list, but every sort column is nullable, and a
keyset over "NULLs last" in both directions needs a three-part cursor per column on two SQL
dialects; offset pages also give what the table shows — "page 3 of 41", a jump to the last page.
At 10,000 jobs the deepest page costs 5-15 ms more than the first
(``bench/runs_table.py``, docs/performance.md, "Runs table").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from peewee import Field

from dispatcher.models import Job, JobTag, Owner
from gym_raas_mqtt.protocol import JobState
from raas_platform.submission.metadata import TAG_PATTERN

SORT_COLUMNS: Mapping[str, Field] = {
    "submitted": Job.submitted_at, "finished": Job.finished_at, "name": Job.name,
    "state": Job.state, "node": Job.node_id, "return": Job.total_return,
    "seconds_upright": Job.seconds_upright, "steps": Job.steps, "episodes": Job.episodes,
    "duration_s": Job.duration_s, "deadline_misses": Job.deadline_misses,
}
"""``sort`` keys (prefix ``-`` for descending) and the indexed column each sorts by."""
DEFAULT_SORT = "-submitted"
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_QUERY_CHARS = 100


class RunsQueryError(ValueError):
    """A runs-table query the API refuses: ``status`` 400 (malformed) or 403 (not allowed)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RunsQuery:
    """One page of the runs table, as asked.

    Attributes:
        sort: a :data:`SORT_COLUMNS` key, ``-`` first for descending.
        state: only jobs in this :class:`JobState` value.
        tag: only jobs with this tag.
        owner: only this owner's jobs (admins; others see only their own anyway).
        node: only jobs that ran (or run) on this node.
        q: search: a substring of the name or the notes (any case), or a job id prefix.
        per_page: rows per page (1..:data:`MAX_PER_PAGE`).
        offset: rows skipped (``(page - 1) * per_page`` for page numbers).
    """

    sort: str = DEFAULT_SORT
    state: str | None = None
    tag: str | None = None
    owner: str | None = None
    node: str | None = None
    q: str | None = None
    per_page: int = DEFAULT_PER_PAGE
    offset: int = 0

    @property
    def page(self) -> int:
        """The 1-based page number of :attr:`offset`."""
        return self.offset // self.per_page + 1

    @property
    def filtered(self) -> bool:
        """Whether a filter or a search narrows the jobs."""
        return any((self.state, self.tag, self.owner, self.node, self.q))

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string that asks for this page with ``changes`` (e.g. ``page=2``), the
        default sort and empty filters left out."""
        out = {k: getattr(self, k) for k in ("sort", "state", "tag", "owner", "node", "q")}
        out |= {"page": self.page, "per_page": self.per_page} | changes
        return {k: str(v) for k, v in out.items()
                if v not in (None, "") and not (k == "sort" and v == DEFAULT_SORT)}


def _int(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RunsQueryError(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise RunsQueryError(f"{name} must be between {lo} and {hi}")
    return value


def _text(args: Mapping[str, str], name: str, limit: int = 64) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > limit:
        raise RunsQueryError(f"{name} is longer than {limit} characters")
    return value or None


def parse_query(args: Mapping[str, str], viewer: Owner) -> RunsQuery:
    """A :class:`RunsQuery` from request arguments (``sort``, ``state``, ``tag``, ``owner``,
    ``node``, ``q``, ``page``, ``per_page``, or the older ``limit``/``offset``).

    Raises:
        RunsQueryError: an unknown sort key or state, a malformed tag, number or page; 403 when
            someone not an admin filters by another owner.
    """
    sort = _text(args, "sort") or DEFAULT_SORT
    if sort.lstrip("-") not in SORT_COLUMNS:
        raise RunsQueryError(f"sort must be one of {', '.join(SORT_COLUMNS)} (prefix - for "
                             "descending)")
    state = _text(args, "state")
    if state is not None and state not in {s.value for s in JobState}:
        raise RunsQueryError(f"state must be one of {', '.join(s.value for s in JobState)}")
    tag = _text(args, "tag")
    if tag is not None and not TAG_PATTERN.match(tag):
        raise RunsQueryError("tag must be 1-32 letters, digits or '_.+-'")
    owner = _text(args, "owner")
    if owner is not None and owner != viewer.name and not viewer.is_admin:
        raise RunsQueryError("only admins may list other users' jobs", 403)
    per_page = _int(args, "per_page", _int(args, "limit", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
                    1, MAX_PER_PAGE)
    if "page" in args:
        offset = (_int(args, "page", 1, 1, 10**6) - 1) * per_page
    else:
        offset = _int(args, "offset", 0, 0, 10**9)
    return RunsQuery(sort=sort, state=state, tag=tag, owner=owner, node=_text(args, "node"),
                     q=_text(args, "q", MAX_QUERY_CHARS), per_page=per_page, offset=offset)


def select(query: RunsQuery, viewer: Owner | None) -> Any:
    """The filtered, searched jobs, unordered (a peewee query); ``viewer`` None means all."""
    rows = Job.select()
    owner = query.owner if viewer is None or viewer.is_admin else viewer.name
    if owner:
        rows = rows.where(Job.owner == owner)
    if query.state:
        rows = rows.where(Job.state == query.state)
    if query.node:
        rows = rows.where(Job.node_id == query.node)
    if query.tag:
        rows = rows.where(Job.id.in_(JobTag.select(JobTag.job).where(JobTag.tag == query.tag)))
    if query.q:
        rows = rows.where(Job.name.contains(query.q) | Job.notes.contains(query.q)
                          | Job.id.startswith(query.q))
    return rows


def page_rows(rows: Any, column: Field, descending: bool, offset: int, limit: int) -> list[Job]:
    """``rows`` ordered by ``column`` then the job id (both one way), ``offset`` skipped, at most
    ``limit``: one statement, the page's ids read from the (column, id) index alone (a deferred
    join: deep offsets skip index entries, not table rows)."""
    if limit <= 0:
        return []
    order = (column.desc(), Job.id.desc()) if descending else (column.asc(), Job.id.asc())
    ids = rows.select(Job.id).order_by(*order).offset(offset).limit(limit)
    return list(Job.select().where(Job.id.in_(ids)).order_by(*order))


@dataclass(frozen=True)
class RunsPage:
    """One page of the runs table.

    Attributes:
        jobs: the page's jobs, in order.
        total: jobs matching the filters on all pages.
        query: what was asked.
    """

    jobs: list[Job]
    total: int
    query: RunsQuery

    @property
    def pages(self) -> int:
        """How many pages the matching jobs fill (at least 1)."""
        return max(1, math.ceil(self.total / self.query.per_page))


def runs_page(query: RunsQuery, viewer: Owner | None) -> RunsPage:
    """Run ``query`` for ``viewer`` (only their own jobs unless an admin; None: everyone's).

    The jobs that have the sort column's value are paged first, those without it after them:
    two index range scans instead of one sort of every row with ``NULLS LAST`` (which neither
    SQLite nor PostgreSQL reads from an index in both directions). A page is one statement and
    the count another (not needed on a short last page; a third and fourth statement only on
    the page where the values run out).
    """
    rows = select(query, viewer)
    column = SORT_COLUMNS[query.sort.lstrip("-")]
    descending = query.sort.startswith("-")
    known = rows.where(column.is_null(False)) if column.null else rows
    jobs = page_rows(known, column, descending, query.offset, query.per_page)
    if column.null and len(jobs) < query.per_page:  # past the last job with a value
        n_known = query.offset + len(jobs) if jobs else known.count()
        jobs += page_rows(rows.where(column.is_null()), Job.id, descending,
                          query.offset + len(jobs) - n_known, query.per_page - len(jobs))
    short = len(jobs) < query.per_page and (jobs or not query.offset)
    return RunsPage(jobs, query.offset + len(jobs) if short else rows.count(), query)
