"""StayOps infrastructure: the `stayops` CLI, the embedded stack, topics and simulators."""
