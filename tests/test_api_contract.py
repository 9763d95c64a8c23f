"""The API contract holds: schemathesis, run over each service's own /openapi.json
against the running service with an owner's token and every check enabled
(no server error, schema-valid requests accepted, only declared statuses and
content types, responses fit their schemas, ...), finds nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from stayops_infra.services import SERVICES
from stayops_infra.system import LocalSystem

pytestmark = pytest.mark.stack

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("st")


def schemathesis(url: str, token: str, report_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
         "--checks", "all", "--header", f"Authorization: Bearer {token}", "--workers", "1",
         "--report", "junit", "--report-dir", str(report_dir), "--no-color"],
        # In its own directory: schemathesis keeps a cache of crashes where it runs. The
        # timeout only stops a hang: the routes grow, and a loaded machine fuzzes slowly.
        cwd=report_dir, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.mark.parametrize("service", [spec.name for spec in SERVICES])
async def test_schemathesis_finds_nothing(system: LocalSystem, stack: Any, service: str, tmp_path: Path) -> None:
    token = stack.mint_token(f"org-contract-{uuid.uuid4().hex[:8]}", "owner-1", "owner")
    done = await asyncio.to_thread(schemathesis, system.url(service), token, tmp_path)
    # Its report: the errors (a request it could not make) and failures sections, else its tail.
    sections = [at for at in (done.stdout.find("ERRORS"), done.stdout.find("FAILURES")) if at >= 0]
    failures = done.stdout[min(sections):] if sections else done.stdout[-15000:]
    assert done.returncode == 0, f"schemathesis on {service}:\n{failures[:15000]}\n{done.stderr[-3000:]}"
