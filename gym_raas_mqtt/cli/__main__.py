"""``python -m gym_raas_mqtt.cli``: the ``raas`` console script."""

import sys

from gym_raas_mqtt.cli import main

sys.exit(main())
