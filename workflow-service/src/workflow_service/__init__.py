"""workflow-service: versioned workflow definitions and their runs (the saga log)."""
