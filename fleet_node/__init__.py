"""The fleet node: the agent (presence, assignments, Docker runner) and the motor node."""
