"""Running a plan: job wrapper, executors, workflow database, reporting, CLI."""
