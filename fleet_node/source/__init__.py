"""A job's code on the node: fetched from git or an uploaded archive, checked hard, made readable.

:mod:`~fleet_node.source.checks` holds the limits, the checks and the two fault kinds
(:class:`SourceRejected`: the job's fault, ends ``failed``; :class:`SourceUnavailable`: the
platform's, ends ``error``), :mod:`~fleet_node.source.git` and :mod:`~fleet_node.source.archive`
the two ways of fetching and :mod:`~fleet_node.source.fetch` the entry point, :func:`fetch_source`.
"""

from fleet_node.source.archive import extract_archive
from fleet_node.source.checks import (ENTRYPOINT, FetchedSource, FetchLimits, SourceRejected,
                                      SourceUnavailable, check_entrypoint, check_git_url,
                                      check_ref)
from fleet_node.source.fetch import describe_source, fetch_source, make_readable
from fleet_node.source.git import fetch_git

__all__ = ["FetchLimits", "FetchedSource", "SourceRejected", "SourceUnavailable", "fetch_git",
           "extract_archive", "fetch_source", "check_git_url", "check_ref", "check_entrypoint",
           "describe_source", "make_readable", "ENTRYPOINT"]
