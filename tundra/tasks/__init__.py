"""Tasks: the unit of agent work, its state machine, the queue/scheduler and the `tasks` service."""
