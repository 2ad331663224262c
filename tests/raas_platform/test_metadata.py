"""The rules of a run's metadata (raas_platform.submission.metadata), the ones the API, the form
and the node all apply."""

from __future__ import annotations

import pytest

from raas_platform.submission import MetadataRejected, SourceRejected, check_metadata
from raas_platform.submission.metadata import (DENIED_ENV, check_env, parse_env_pairs,
                                               split_args, split_tags)


def test_valid_metadata_is_normalised() -> None:
    m = check_metadata(" swingup-v3 ", ["lqr", " x ", "lqr", ""], "  note\r\nline 2 ",
                       ["600", "--gain=1.5", ""], {"GAIN": "1.5", "_X": "a=b"})
    assert (m.name, m.tags, m.notes, m.args, dict(m.env)) == (
        "swingup-v3", ("lqr", "x"), "note\nline 2", ("600", "--gain=1.5", ""),
        {"GAIN": "1.5", "_X": "a=b"})
    assert check_metadata() == check_metadata("", [], " ", None, None)


@pytest.mark.parametrize("name", sorted(DENIED_ENV) + ["RAAS_JOB_ID", "RAAS_", "LD_PRELOAD",
                                                       "LD_LIBRARY_PATH"])
def test_the_platforms_and_the_interpreters_variables_are_refused(name: str) -> None:
    with pytest.raises(MetadataRejected, match="reserved by the platform") as e:
        check_env({name: "x"})
    assert e.value.field == "env" and isinstance(e.value, SourceRejected)  # the node: failed


def test_text_forms() -> None:
    assert split_tags("lqr, energy  pd,") == ["lqr", "energy", "pd"]
    assert split_args("600 --label='a b' \"$HOME\"") == ["600", "--label=a b", "$HOME"]
    assert parse_env_pairs(["A=1", "", "B=x=y", "A=2"]) == {"A": "2", "B": "x=y"}
    with pytest.raises(MetadataRejected, match="unbalanced|quotation") as e:
        split_args("'open")
    assert e.value.field == "args"
    with pytest.raises(MetadataRejected, match="NAME=value"):
        parse_env_pairs(["NOEQUALS"])
