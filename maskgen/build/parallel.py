"""Where a build's tasks run: joblib workers on this machine (loky), or a Dask cluster's."""

from __future__ import annotations

from joblib import Parallel

from .options import BuildConfig, BuildError


def parallel(config: BuildConfig, n_tasks: int) -> Parallel:
    n_jobs = config.workers if config.workers != 0 else 1
    if n_tasks <= 1:
        n_jobs = 1
    return Parallel(n_jobs=n_jobs, return_as="generator")  # the backend comes from backend_context


def backend_context(config: BuildConfig):
    """joblib's Dask backend for a cluster; a no-op context otherwise."""
    import contextlib

    if config.backend != "dask":
        return contextlib.nullcontext()
    try:
        from dask.distributed import Client
    except ImportError:
        raise BuildError("--backend dask needs dask[distributed]: pip install 'dask[distributed]'") from None
    if not config.scheduler:
        raise BuildError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    from joblib import parallel_config

    stack = contextlib.ExitStack()
    client = Client(config.scheduler)
    stack.callback(client.close)
    stack.enter_context(parallel_config(backend="dask"))
    return stack
