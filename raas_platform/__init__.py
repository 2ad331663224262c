"""What the platform's services share: settings declared once and the object store."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raas-platform")
    """The installed platform's version (recorded in every result summary)."""
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "unknown"
