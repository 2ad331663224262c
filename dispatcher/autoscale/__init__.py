"""Autoscaling in the dispatcher: fleet samples, the policy loop, standby and wake, trace export.

:mod:`~dispatcher.autoscale.config` holds the settings, :mod:`~dispatcher.autoscale.snapshot`
what the autoscaler sees (and records for the fleet page), :mod:`~dispatcher.autoscale.scaler`
the decisions, :mod:`~dispatcher.autoscale.trace` the trace export and
:mod:`~dispatcher.autoscale.cli` ``raas fleet`` (nothing is imported here, so that ``raas --help``
stays light).
"""
