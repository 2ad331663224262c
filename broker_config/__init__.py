"""Mosquitto for RaaS-MQTT: broker configs, dynamic-security roles, credentials and the bridge.

Entry points: :func:`broker_config.runner.start_broker` (tests, demo, benchmarks) returning a
:class:`broker_config.handle.BrokerHandle`,
:class:`broker_config.dynsec.DynSec` and :mod:`broker_config.provision` (accounts at run time),
``raas broker ...`` (:mod:`broker_config.cli`). Roles are documented in broker_config/README.md.
"""
