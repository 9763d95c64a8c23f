"""stayops_kit."""
