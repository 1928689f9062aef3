"""`mlops-nb` commands for the tests, each its own process, forked from one that has already imported what a command
imports (MLflow and its SQL stores: ~2.8 s of CPU per process here, half the suite's CPU when every command started
from scratch). The product's warm kernels do the same (`mlops_nb.kernels`). A command gets its own argv, working folder,
environment, stdin/stdout/stderr and exit status, and runs `mlops_nb.cli.main` as the console script does; the
interpreter's exit (threads joined, atexit handlers, flushing) is the one every Python process goes through.

Run as `python cliserver.py SOCKET`: it prints `ready` once imported, then serves until its parent (pytest) is gone.
A request on SOCKET: three file descriptors (stdin, stdout, stderr) with one byte, then JSON {argv, cwd, env} and EOF;
the answer: the command's exit code."""
import json
import os
import socket
import sys
import threading


def _serve(path: str):
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(path)
        srv.listen(16)
        srv.settimeout(1)
        print('ready', flush=True)
        parent = os.getppid()
        while os.getppid() == parent:  # until pytest is gone
            try: conn, _ = srv.accept()
            except TimeoutError: conn = None
            while True:  # reap the supervisors that ended
                try: pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError: break
                if not pid: break
            if conn is None: continue
            if os.fork() == 0:
                srv.close()
                return _supervise(conn)
            conn.close()
    os.remove(path)
    os.rmdir(os.path.dirname(path))


def _supervise(conn: socket.socket):
    "Fork the command, answer its exit code on `conn`; returns (in the command's process) the request."
    conn.setblocking(True)
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)
    with conn.makefile('rb') as f: request = json.load(f)
    pid = os.fork()
    if pid == 0:
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        return request
    for fd in fds: os.close(fd)
    _, status = os.waitpid(pid, 0)
    conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
    os._exit(0)


if __name__ == '__main__':
    from mlops_nb.kernels import _skip_iri_grammars
    _skip_iri_grammars()  # as `mlops_nb.cli.main` does before anything imports jsonschema
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import papermill  # noqa: F401  (`run` and `sweep`; not whylogs: it starts threads, which a fork does not copy)

    import mlops_nb.cli
    import mlops_nb.gitops  # noqa: F401
    import mlops_nb.report  # noqa: F401
    import mlops_nb.runner  # noqa: F401
    assert threading.active_count() == 1, threading.enumerate()
    request = _serve(sys.argv[1])  # returns only in a command's process
    if request:
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        sys.argv = request['argv']
        sys.exit(mlops_nb.cli.main())  # what the console script runs
