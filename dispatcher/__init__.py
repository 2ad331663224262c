"""The dispatcher: owns the job queue and follows every job execution to its end."""
