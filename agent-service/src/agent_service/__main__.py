"""`python -m agent_service` runs the service."""

from agent_service.app import main

main()
