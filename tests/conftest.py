"""Fixtures shared by all test directories: a private Slurm cluster.

``slurm_cluster`` (session) starts a single-node cluster from
``tests/slurmcluster.py`` under a pytest temporary directory and stops it at
the end of the session (also on failure, Ctrl-C, SIGTERM and interpreter
exit).  ``slurm`` (per test) is the same cluster with an empty queue: jobs a
previous test left are cancelled first.

Without Slurm installed (or without root) the tests that use them are
skipped, unless ``WF_REQUIRE_SLURM=1`` is set (as in CI): then they fail.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest


def _load_slurmcluster():
    """tests/slurmcluster.py, loaded by path (tests are not a package)."""
    name = "wf_tests_slurmcluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("slurmcluster.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return sys.modules[name]


slurmcluster = _load_slurmcluster()


def _unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    missing = slurmcluster.have_slurm()
    if missing:
        return (
            f"Slurm is not installed (missing: {missing}); "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the private Slurm cluster needs root (slurmd runs jobs as their submitter)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running private Slurm cluster (``slurmcluster.Cluster``) for the session."""
    reason = _unavailable()
    if reason:
        if os.environ.get("WF_REQUIRE_SLURM") == "1":
            pytest.fail(f"WF_REQUIRE_SLURM=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("slurm", numbered=True)
    try:
        cluster = slurmcluster.start(base)
    except slurmcluster.ClusterError as e:
        pytest.fail(f"could not start the private Slurm cluster:\n{e}", pytrace=False)

    # Guards for exits that skip fixture teardown.  stop() is idempotent.
    atexit.register(cluster.stop)
    previous = None
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

            def on_sigterm(signum, frame):
                cluster.stop(cancel_timeout=2)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

            previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not in the main thread
        previous = None
    try:
        yield cluster
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def slurm(slurm_cluster):
    """The session's cluster with no jobs left over from a previous test."""
    if not slurm_cluster.cancel_all():
        pytest.fail(
            f"jobs of a previous test would not leave the queue: {slurm_cluster.job_ids()}\n"
            + slurm_cluster.logs(),
            pytrace=False,
        )
    yield slurm_cluster
    slurm_cluster.cancel_all()
