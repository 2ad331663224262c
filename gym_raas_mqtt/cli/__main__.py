import sys

from gym_raas_mqtt.cli import main

sys.exit(main())
