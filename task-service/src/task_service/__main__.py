"""`python -m task_service` runs the service."""

from task_service.app import main

main()
