"""`python -m automation_service` runs the service."""

from automation_service.app import main

main()
