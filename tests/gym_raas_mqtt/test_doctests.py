"""The docstring examples (the env's Gymnasium-style table and doctest, config, ...) run in CI."""

import doctest

import pytest

import gym_raas_mqtt.config
import gym_raas_mqtt.envs.pendulum


@pytest.mark.parametrize("module", [gym_raas_mqtt.envs.pendulum, gym_raas_mqtt.config])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
