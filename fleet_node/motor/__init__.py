"""The motor node: owns the motor and the clock, serves the env over the node-local broker."""
