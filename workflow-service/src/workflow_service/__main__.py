"""`python -m workflow_service` runs the service."""

from workflow_service.app import main

main()
