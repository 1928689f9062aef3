"""Throwaway services for tests and benchmarks: a real PostgreSQL cluster and a real Prometheus on free localhost ports."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
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


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, log: Path):
    """A real `mlflow server` on a free localhost port with `backend` as its store and proxied artifacts kept in
    `artifacts` (`--artifacts-destination`); its access log goes to `log`. Yields its URL; stopped on exit."""
    import requests
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    with open(log, 'w') as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / 'mlflow'), 'server', '--backend-store-uri', backend,
                                 '--artifacts-destination', str(artifacts), '--host', '127.0.0.1', '--port', str(port),
                                 '--workers', '1'], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            try:
                if requests.get(f'{url}/health', timeout=5).ok: break
            except requests.RequestException: pass  # not listening yet, or busy starting
            if proc.poll() is not None: raise RuntimeError(f'mlflow server exited: {log.read_text()[-2000:]}')
            time.sleep(0.1)
        else: raise RuntimeError(f'mlflow server did not answer in 60 s: {log.read_text()[-2000:]}')
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 1, wrap=lambda argv: argv):
    """A TLS Dask scheduler and `workers` `dask worker` processes on localhost (`wrap` may prefix each worker's
    command), with a throwaway CA's certificates in `folder/certs` and each worker's log and local directory in
    `folder`; the workers may fork warm kernels. Yields the scheduler's address, the certificates and the worker
    processes (each a nanny; its worker is a child process); stopped on exit."""
    certs = tls_files(folder / 'certs')
    tls = ['--tls-ca-file', str(certs['ca']), '--tls-cert', str(certs['cert']), '--tls-key', str(certs['key'])]
    port, procs, bin_ = free_port(), [], Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != 'MLFLOW_TRACKING_URI'}
    env['DASK_DISTRIBUTED__WORKER__DAEMON'] = 'False'  # workers may fork warm kernels
    try:
        procs.append(subprocess.Popen([str(bin_ / 'dask'), 'scheduler', '--protocol', 'tls', '--host', '127.0.0.1',
                                       '--port', str(port), '--no-dashboard', *tls], env=env, stderr=subprocess.DEVNULL))
        for i in range(workers):
            with open(folder / f'worker-{i}.log', 'w') as log:
                procs.append(subprocess.Popen(wrap([str(bin_ / 'dask'), 'worker', f'tls://127.0.0.1:{port}', '--nthreads', '1',
                                                    '--no-dashboard', '--local-directory', str(folder / f'worker-{i}'), *tls]),
                                              env=env, stderr=log))
        yield {'scheduler': f'tls://127.0.0.1:{port}', 'certs': certs, 'workers': procs[1:]}
    finally:
        for p in procs: p.terminate()
        for p in procs: p.wait(30)


@contextlib.contextmanager
def remote_cluster(hidden: Path, workers: int = 2):
    """PostgreSQL, `mlflow server` with proxied artifacts and a TLS `dask_cluster` whose `workers` each run in a
    private mount namespace where an empty tmpfs covers `hidden` (where the projects live): the workers share no file
    of the projects with the runner. Needs root (the mount namespace). Yields the addresses, the certificates, the
    server's access log and the worker processes."""
    outside = Path(tempfile.mkdtemp(prefix='mlops-nb-cluster-'))
    hide = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(hidden)]
    try:
        with postgres() as pg, mlflow_server(pg, outside / 'artifacts', outside / 'mlflow.log') as url, \
                dask_cluster(outside, workers, wrap=lambda argv: [*hide, *argv]) as dask:
            yield {'url': url, **dask, 'hidden': hidden, 'outside': outside, 'log': outside / 'mlflow.log'}
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def remote_yaml(root: Path, cluster: dict, jobs: int = 2):
    "Move the weather-style project `root` (SQLite, warm executor) to `cluster` by editing its `mlops.yaml` only."
    c = cluster['certs']
    y = root / 'mlops.yaml'
    y.write_text(y.read_text().replace('tracking_uri: sqlite:///mlruns.db', f"tracking_uri: {cluster['url']}")
                 .replace('executor: warm', f"executor: dask\nscheduler: {cluster['scheduler']}\njobs: {jobs}\n"
                          f"tls: {{ca_file: {c['ca']}, cert: {c['cert']}, key: {c['key']}}}\nshared_filesystem: false"))
    return root
