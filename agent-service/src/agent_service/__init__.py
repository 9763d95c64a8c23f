"""agent-service: AI agent profiles, their activity log, and a read model of the
synced listings and reservations the agents analyse."""
