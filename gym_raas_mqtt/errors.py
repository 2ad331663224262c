"""The project's exception hierarchy: every error we raise on purpose derives from RaasError."""


class RaasError(Exception):
    """Base class of all RaaS-MQTT errors."""


class ConfigError(RaasError, ValueError):
    """A setting (environment variable or calibration file) is invalid."""


class ProtocolError(RaasError, ValueError):
    """A message or topic does not follow the wire contract in :mod:`gym_raas_mqtt.protocol`."""


class BackendError(RaasError, RuntimeError):
    """The env's backend cannot serve a request (motor node missing, fault, timeout)."""


class MotorFault(BackendError):
    """The motor node refused or aborted a step or reset because of a safety condition."""
