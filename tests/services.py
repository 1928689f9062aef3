"""Throwaway services for tests and benchmarks: a real PostgreSQL cluster on a free localhost port."""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str, **kw):
    "Run a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root), else as ourselves."
    prefix = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, **kw)


def pg_bin() -> Path | None:
    "Folder holding initdb and pg_ctl (Debian keeps them under /usr/lib/postgresql/<major>/bin), or None."
    if found := shutil.which('initdb'): return Path(found).resolve().parent
    versions = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def postgres(db: str = 'mlflow'):
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only, with database `db`; yields its
    SQLAlchemy URI for MLflow (psycopg 3). Stopped and deleted on exit."""
    bin_ = pg_bin()
    if bin_ is None: raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    tmp = Path(tempfile.mkdtemp(prefix='mlops-nb-pg-'))
    data, sock, port = tmp / 'data', tmp / 'sock', free_port()
    sock.mkdir()
    if os.geteuid() == 0: shutil.chown(tmp, 'postgres'), shutil.chown(sock, 'postgres')
    try:
        _as_postgres(str(bin_ / 'initdb'), '-D', str(data), '-U', 'postgres', '--auth=trust', '-E', 'UTF8')
        _as_postgres(str(bin_ / 'pg_ctl'), '-D', str(data), '-w', '-l', str(tmp / 'log'), '-o',
                     f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", 'start')
        try:
            _as_postgres(str(bin_ / 'createdb'), '-h', '127.0.0.1', '-p', str(port), '-U', 'postgres', db)
            yield f'postgresql+psycopg://postgres@127.0.0.1:{port}/{db}'
        finally:
            _as_postgres(str(bin_ / 'pg_ctl'), '-D', str(data), '-m', 'immediate', 'stop')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
