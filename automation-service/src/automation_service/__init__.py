"""automation_service."""
