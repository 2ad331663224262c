"""``python -m dispatcher``: the same as ``raas dispatcher``."""

import sys

from gym_raas_mqtt.cli import main

if __name__ == "__main__":
    sys.exit(main(["-v", "dispatcher", *sys.argv[1:]]))  # info logging for a service
