"""A job's code on the node: fetched from git or an uploaded archive, checked hard, made readable.

The checks are the platform's shared ones (:mod:`raas_platform.submission`, the same the API
applies at submission), re-exported here with the two fault kinds (:class:`SourceRejected`: the
job's fault, ends ``failed`` and is not retried; :class:`SourceUnavailable`: the platform's, ends
``error`` and is retried elsewhere). :mod:`~fleet_node.source.git` and
:mod:`~fleet_node.source.archive` are the two ways of fetching, :mod:`~fleet_node.source.tree`
the fetched tree and :mod:`~fleet_node.source.fetch` the entry point, :func:`fetch_source`.
"""

from fleet_node.source.archive import extract_archive
from fleet_node.source.fetch import describe_source, fetch_source
from fleet_node.source.git import fetch_git
from fleet_node.source.tree import FetchedSource, FetchLimits, make_readable
from raas_platform.submission import (ENTRYPOINT, SourceRejected, SourceUnavailable,
                                      check_entrypoint, check_git_url, check_ref)

__all__ = ["FetchLimits", "FetchedSource", "SourceRejected", "SourceUnavailable", "fetch_git",
           "extract_archive", "fetch_source", "check_git_url", "check_ref", "check_entrypoint",
           "describe_source", "make_readable", "ENTRYPOINT"]
