"""The run metadata and runs-table columns reach an older database: added on start-up with
their (column, id) indexes and the job-tag table."""

from __future__ import annotations

from dispatcher.models import RUNS_TABLE_SORT_COLUMNS, database, init_db

NEW_COLUMNS = ("name", "tags", "notes", "args", "env", "total_return", "seconds_upright",
               "steps", "episodes", "duration_s", "deadline_misses")


def test_an_older_job_table_gains_the_columns_and_indexes(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = init_db(url)
    with db.connection_context():  # make it the database of the previous release
        for index in db.get_indexes("job"):
            if index.name.endswith("_id") and index.name != "job_owner_id":
                db.execute_sql(f'DROP INDEX "{index.name}"')
        for column in NEW_COLUMNS:
            db.execute_sql(f'ALTER TABLE "job" DROP COLUMN "{column}"')
        db.execute_sql('DROP TABLE "jobtag"')
        db.execute_sql("INSERT INTO owner (name, is_admin, max_running, created_at) "
                       "VALUES ('alice', 0, 1, 0)")
        db.execute_sql("INSERT INTO job (id, owner_id, state, source_kind, time_limit_s, "
                       "submitted_at, attempts, max_attempts, cancel_requested) VALUES "
                       "('old1', 'alice', 'succeeded', 'git', 30, 1, 1, 3, 0)")
    db.close()
    db = init_db(url)
    with db.connection_context():
        columns = {c.name for c in db.get_columns("job")}
        indexed = {tuple(i.columns) for i in db.get_indexes("job")}
        assert set(NEW_COLUMNS) <= columns
        assert {(c, "id") for c in RUNS_TABLE_SORT_COLUMNS} <= indexed
        assert db.table_exists("jobtag")
        row = db.execute_sql('SELECT name, total_return FROM job WHERE id = ?', ("old1",))
        assert row.fetchone() == (None, None)
    db.close()
    database.initialize(None)
