"""Infra test fixtures; `stack` and `service_process` come from the stayops_infra.testing plugin."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stayops_infra.testing import free_port

_FAKE_SERVICE = textwrap.dedent(
    '''
    """A stand-in service: answers /healthz like a real one, so process handling is testable."""
    import os
    from http.server import BaseHTTPRequestHandler, HTTPServer


    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass


    print("fake service starting", flush=True)
    HTTPServer(("127.0.0.1", int(os.environ["STAYOPS_HTTP_PORT"])), Health).serve_forever()
    '''
)


@pytest.fixture
def fake_service_env(tmp_path: Path) -> dict[str, str]:
    """Env that makes `ServiceProcess("fake-service", env)` run the stand-in module."""
    module_dir = tmp_path / "modules"
    module_dir.mkdir()
    (module_dir / "fake_service.py").write_text(_FAKE_SERVICE)
    return {"PYTHONPATH": str(module_dir), "STAYOPS_HTTP_PORT": str(free_port())}
