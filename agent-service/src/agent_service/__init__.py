"""agent-service: AI agent profiles, their activity log, a read model of the synced
listings, reservations, prices, reviews and market rates the agents analyse, and the
skills they run on the analysis tasks assigned to them."""
