"""Payload models of the event catalog, one module per producing context."""
