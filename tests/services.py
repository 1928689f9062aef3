"""Throwaway services for tests and benchmarks: a real PostgreSQL cluster and a real Prometheus on free localhost ports."""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
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


def tls_files(folder: Path) -> dict[str, Path]:
    "A throwaway CA and one certificate it signed for 127.0.0.1 (scheduler, workers and client share it): PEM files."
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    def cert(subject, key, issuer, issuer_key, ca):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca: b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost'),
                                                                    x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), False)
        return b.sign(issuer_key, hashes.SHA256())
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {'ca': folder / 'ca.pem', 'cert': folder / 'cert.pem', 'key': folder / 'key.pem'}
    files['ca'].write_bytes(cert('test CA', ca_key, 'test CA', ca_key, True).public_bytes(serialization.Encoding.PEM))
    files['cert'].write_bytes(cert('127.0.0.1', key, 'test CA', ca_key, False).public_bytes(serialization.Encoding.PEM))
    files['key'].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    files['key'].chmod(0o600)
    return files


@contextlib.contextmanager
def prometheus(config: Path):
    """A real Prometheus (Debian's package) with `config`, its TSDB in a temporary folder, on a free localhost port;
    yields a `query(expr)` function returning the instant vector as a list of {metric, value}; stopped on exit."""
    import requests
    exe = shutil.which('prometheus')
    if exe is None: raise RuntimeError("Prometheus is not installed (Debian: apt-get install prometheus)")
    tmp, port = Path(tempfile.mkdtemp(prefix='mlops-nb-prom-')), free_port()
    proc = subprocess.Popen([exe, f'--config.file={config}', f'--storage.tsdb.path={tmp}',
                             f'--web.listen-address=127.0.0.1:{port}'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f'http://127.0.0.1:{port}'
    def query(expr: str) -> list[dict]:
        r = requests.get(f'{url}/api/v1/query', params={'query': expr}, timeout=10).json()
        assert r['status'] == 'success', r
        return r['data']['result']
    query.url = url
    try:
        for _ in range(100):
            try:
                if requests.get(f'{url}/-/ready', timeout=1).ok: break
            except requests.ConnectionError: pass
            if proc.poll() is not None: raise RuntimeError(f'prometheus exited: {proc.stderr.read().decode()[-2000:]}')
            time.sleep(0.1)
        yield query
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
