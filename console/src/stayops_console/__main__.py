"""`python -m stayops_console`: serve the console with uvicorn."""

from __future__ import annotations

import uvicorn

from stayops_console.app import create_app
from stayops_console.settings import ConsoleSettings


def main() -> None:
    settings = ConsoleSettings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info")


if __name__ == "__main__":
    main()
