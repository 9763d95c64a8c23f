"""workflow_service."""
