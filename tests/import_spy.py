"""`python import_spy.py OUT.json <mlops-nb arguments>`: run mlops-nb in this process and write to OUT.json every two
imports made at once by different threads of mlops_nb's own (the main thread, its pools', Dask's task threads).

Two threads importing one package at once can each see the other's modules half-imported (`ImportError: cannot import
name ... from partially initialized module`), so mlops_nb never lets two of its threads import at once. The spy wraps
the import system's entry point for a module not imported yet and notes when each thread's outermost import began and
ended."""
import atexit
import importlib._bootstrap as bootstrap
import json
import sys
import threading
import time

OURS = ('MainThread', 'mlops-nb', 'asyncio_', 'Dask-Default-Threads', 'ThreadPoolExecutor')  # thread name prefixes
_load, _depth, _log = bootstrap._find_and_load, threading.local(), []


def _spied(name, import_):
    module = sys.modules.get(name)
    if module is not None and not getattr(getattr(module, '__spec__', None), '_initializing', False):
        return _load(name, import_)  # imported already: nothing to race over
    depth, t0 = getattr(_depth, 'n', 0), time.perf_counter()
    _depth.n = depth + 1
    try: return _load(name, import_)
    finally:
        _depth.n = depth
        if depth == 0: _log.append((t0, time.perf_counter(), threading.current_thread().name, name))


def install():
    "Note every import of this process from now on."
    bootstrap._find_and_load = _spied


def overlaps(log=_log) -> list[dict]:
    "Pairs of imports by different threads of ours whose times overlap."
    ours = sorted(e for e in log if e[2].startswith(OURS))
    found = []
    for i, (_, a1, at, an) in enumerate(ours):
        for b0, _b1, bt, bn in ours[i + 1:]:
            if b0 >= a1: break
            if bt != at: found.append({at: an, bt: bn})
    return found


if __name__ == '__main__':
    out = sys.argv[1]
    atexit.register(lambda: open(out, 'w').write(json.dumps({'imports': len(_log), 'threads': sorted({e[2] for e in _log}),
                                                             'overlaps': overlaps()})))
    install()
    import mlops_nb.cli
    sys.argv = ['mlops-nb', *sys.argv[2:]]
    mlops_nb.cli.main()
