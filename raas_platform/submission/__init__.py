"""The one set of checks on a job's code, run by the API when a job is submitted and by the node
when it fetches the code: the same functions, limits and messages on both sides.

* :mod:`~raas_platform.submission.rules`: limits (``RAAS_CLONE_MAX_BYTES``,
  ``RAAS_CLONE_MAX_FILES``), URL schemes (``RAAS_CLONE_SCHEMES``), URL, ref and member-name
  syntax, ``run.py`` at the root, and the two faults.
* :mod:`~raas_platform.submission.archive`: reading an archive member by member under the rules.
* :mod:`~raas_platform.submission.git`: running git safely, classifying its failures, and
  resolving a ref to a commit with ``git ls-remote``.
* :mod:`~raas_platform.submission.metadata`: a run's name, tags, notes, ``run.py`` arguments and
  environment variables (:class:`MetadataRejected` is a :class:`SourceRejected`).

**URL schemes.** ``https`` and ``ssh`` (also as scp-like ``user@host:path``) by default.
``git://`` is never allowed: it is unauthenticated and unencrypted, so anyone on the network path
could substitute code (and the nodes never fetched it). ``file`` only when the operator adds it
to ``RAAS_CLONE_SCHEMES`` (the dev stack does, for its demo repositories; production does not):
it lets any user name any git repository the service's account can read on that host. Even then
only ``file:///absolute/path`` is accepted: no host (``file://localhost/...`` is refused), no
``..``, no percent escapes.

**Whose fault.** :class:`SourceRejected` is the user's: the API answers 400 with its message, the
node ends the job ``failed`` with it and the job is not retried. :class:`SourceUnavailable` is
the platform's: the node ends the execution ``error`` and it is retried on another node. A
failed git command is classified by its message (:func:`~raas_platform.submission.git.classify`):

* the user's: the repository does not exist or is not a git repository, authentication is
  required or refused (a private repository), no such branch, tag or commit, a TLS certificate
  or ssh host key that does not verify, a host name that **does not exist** (the resolver answers
  "no such name", looked up again to be sure), and a fetch that does not finish within
  ``RAAS_CLONE_TIMEOUT_S`` (too large, or too slow a server: the API's ``ls-remote`` at
  submission has shown that the server answers);
* the platform's: a resolver that does not answer ("temporary failure in name resolution"),
  connection refused, reset or timed out, network or host unreachable, HTTP 5xx, a broken
  transfer, git missing, disk or memory exhausted; and anything not recognised.

"Unreachable" is thus split by what the network says: a name that does not exist is a property
of the URL the user typed, while a connection that fails or times out may be this machine's
network, so the job gets another node. Most of the user's errors never reach a node: the API
resolves the ref with ``git ls-remote`` (same checks, same schemes) and refuses the submission.
"""

from raas_platform.submission.archive import ArchiveContents, ArchiveReader, Member, scan_archive
from raas_platform.submission.git import GitRunner, classify, git_env, pin_ref
from raas_platform.submission.metadata import (MetadataRejected, RunMetadata, check_args,
                                               check_env, check_metadata)
from raas_platform.submission.rules import (ENTRYPOINT, SUPPORTED_SCHEMES, Budget, SourceLimits,
                                            SourceRejected, SourceUnavailable, check_entrypoint,
                                            check_git_url, check_member_path, check_ref,
                                            check_schemes, code_root, size_text)

__all__ = ["ENTRYPOINT", "SUPPORTED_SCHEMES", "ArchiveContents", "ArchiveReader", "Budget",
           "GitRunner", "Member", "MetadataRejected", "RunMetadata", "SourceLimits",
           "SourceRejected", "SourceUnavailable", "check_args", "check_entrypoint", "check_env",
           "check_git_url", "check_member_path", "check_metadata", "check_ref", "check_schemes",
           "classify", "code_root", "git_env", "pin_ref", "scan_archive", "size_text"]
