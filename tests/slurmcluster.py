"""A private single-node Slurm cluster for tests and benchmarks.

Standard library only; importable (``start(base_dir) -> Cluster``,
``Cluster.stop()``) and runnable as a script::

    eval "$(python tests/slurmcluster.py start /tmp/mycluster)"   # detaches
    sbatch --wrap true; squeue
    python tests/slurmcluster.py stop /tmp/mycluster

Everything the cluster uses is private to ``base_dir`` (its own munge key and
munged, free TCP ports, state, spool, pid and log files), so several clusters
can run side by side on one machine.  The client commands (sbatch, squeue,
scontrol, scancel, sinfo) talk to a cluster when ``Cluster.env`` (that is,
``SLURM_CONF``) is merged into their environment.

Layout of ``base_dir``::

    slurm.conf  pids.json  state/  spool/  log/  run/
    munge/      (munge.key, munged.socket, .pid, .log, .seed; owned by munge)

munged runs as the ``munge`` user, so its directory must be reachable by
that user; when ``base_dir`` is not (pytest's tmp dirs are 0700 root) or its
path would be too long for a unix socket, ``munge`` is a symlink to a
private ``/tmp/slurmcluster-munge-*`` directory that ``stop`` removes.

Configuration choices (see ``_slurm_conf``):

- One node named after ``hostname -s`` at 127.0.0.1, ``cpus`` CPUs (32 by
  default, more than the machine has, with ``SlurmdParameters=config_overrides``)
  so that many 1-CPU jobs run at once, and ``RealMemory=4000`` (MB) so that
  ``--mem`` requests are checked (``SelectTypeParameters=CR_CPU_Memory``;
  a job without ``--mem`` gets ``DefMemPerCPU=100``; ``--mem 5000`` is
  refused by sbatch).
- No accounting (no slurmdbd, so no ``sacct``): ``scontrol show job`` and
  ``squeue -t all`` are the only record of a finished job and keep it for
  ``MinJobAge=300`` seconds (Slurm's default) after it ends, plus a few
  seconds until the next purge (MinJobAge=5 was gone after 13 s); after that
  the job id is "Invalid" (scontrol and squeue -j exit 1).
- Fast scheduling: ``batch_sched_delay=0`` (the default delays batch launch
  and makes short jobs about 3x slower) and ``sched_min_interval=0``.  Even
  so slurmctld starts pending batch jobs from a loop that runs once a
  second: a trivial job takes 0.1-1 s from sbatch to COMPLETED, and at most
  ``cpus`` jobs start per second.  The main scheduler first runs about 3 s
  after slurmctld starts; ``start`` waits for that (``wait_scheduler``).
- Quick tear-down: ``KillWait=2`` (SIGTERM to SIGKILL on cancel/timeout),
  ``InactiveLimit=0``, ``ReturnToService=2`` (a node set DOWN returns to
  service when its slurmd answers).  ``JobRequeue`` keeps Slurm's default
  (1): a batch job on a node that fails is requeued (PENDING, Reason
  BeginTime, Restarts=1, started again after 120 s), unless ``--no-requeue``
  (then NODE_FAIL).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Set in the daemons' environment (inherited by slurmstepd) to find leftovers.
MARKER = "SLURMCLUSTER_DIR"
PARTITION = "debug"
MUNGE_USER = "munge"
#: Longest unix socket path we accept (sun_path is 108 bytes with the NUL).
_MAX_SOCKET = 100


#: Job states after which nothing changes (unless the job is requeued).
FINAL_STATES = frozenset(
    "BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY PREEMPTED "
    "TIMEOUT".split()
)

_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=")


def parse_scontrol(line: str) -> dict[str, str]:
    """``Key=Value Key=Value…`` (one ``scontrol -o`` record) as a dict.

    Values may contain spaces (a WorkDir, a Reason); a key is a word (with
    ``:`` or ``/``, as in ``AllocNode:Sid``) that directly precedes ``=``
    after a blank.
    """
    line = line.strip()
    keys = list(_KEY.finditer(line))
    out = {}
    for m, nxt in zip(keys, [*keys[1:], None], strict=True):
        end = nxt.start() if nxt is not None else len(line)
        out[m.group(1)] = line[m.end() : end].strip()
    return out


class ClusterError(RuntimeError):
    """The cluster could not be started (the message carries the daemon logs)."""


_SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
_PROGRAMS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "slurmctld", "slurmd", "munged")


def have_slurm() -> str | None:
    """None when Slurm and munge are installed, else what is missing."""
    missing = [p for p in _PROGRAMS if shutil.which(p, path=_SEARCH_PATH) is None]
    try:
        pwd.getpwnam(MUNGE_USER)
    except KeyError:
        missing.append(f"user {MUNGE_USER}")
    return ", ".join(missing) or None


def _which(prog: str) -> str:
    found = shutil.which(prog, path=_SEARCH_PATH)
    if not found:
        raise ClusterError(f"{prog} not found (install slurmctld slurmd slurm-client munge)")
    return found


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (bound together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _reachable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Can a process with uid/gids traverse every directory down to path?"""
    for d in [path, *path.parents]:
        st = d.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"  ({e})"
    return "\n".join("  " + line for line in text[-lines:]) or "  (empty)"


# -- processes ---------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    """The state letter of a process, None when it does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _read0(pid: int, what: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids: list[int], timeout: float, procs: dict[int, subprocess.Popen]) -> list[int]:
    """Wait until none of pids is alive (reaping our children); the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            if pid in procs:
                procs[pid].poll()
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _terminate(pids: list[int], procs: dict[int, subprocess.Popen], timeout: float = 10) -> None:
    """SIGTERM, wait, SIGKILL what remains, and wait again."""
    pids = [p for p in pids if _alive(p)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    left = _wait_gone(pids, timeout, procs)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    _wait_gone(left, 5, procs)


# -- the cluster -------------------------------------------------------------


@dataclass
class Cluster:
    """A running private cluster; ``env`` makes Slurm's commands use it."""

    base_dir: Path
    conf: Path
    env: dict[str, str]
    partition: str
    node: str
    cpus: int
    pids: dict[str, int]
    munge_dir: Path
    ports: dict[str, int]
    startup_seconds: float = 0.0
    idle_seconds: float = 0.0
    _procs: dict[int, subprocess.Popen] = field(default_factory=dict, repr=False)

    # -- helpers for callers --------------------------------------------------

    def environ(self, **extra: str) -> dict[str, str]:
        """os.environ with this cluster's env (and extra) merged in."""
        return {**os.environ, **self.env, **extra}

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run a Slurm command against this cluster; text output captured."""
        return subprocess.run(
            argv, env=self.environ(), capture_output=True, text=True, check=check, timeout=timeout
        )

    def job_ids(self) -> list[str]:
        """Ids of the jobs squeue lists (pending, running, completing…)."""
        out = self.run("squeue", "-h", "-o", "%i", check=False).stdout
        return out.split()

    def sbatch(self, *args: str, cwd: str | os.PathLike[str] | None = None) -> str:
        """Submit with ``sbatch --parsable ARGS…``; the job id."""
        argv = ["sbatch", "--parsable", *args]
        if cwd is not None:
            argv.insert(2, f"--chdir={cwd}")
        out = self.run(*argv).stdout.strip()
        return out.split(";")[0]  # "id" or "id;cluster"

    def state(self, job_id: str) -> str:
        """The job's state as squeue shows it ("" once it is purged)."""
        r = self.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T", check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    def show_job(self, job_id: str) -> dict[str, str]:
        """``scontrol -o show job ID`` as a dict ({} once the job is purged)."""
        r = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        return parse_scontrol(r.stdout) if r.returncode == 0 else {}

    def show_node(self) -> dict[str, str]:
        """``scontrol -o show node NODE`` as a dict."""
        return parse_scontrol(self.run("scontrol", "-o", "show", "node", self.node).stdout)

    def wait_job(self, job_id: str, timeout: float = 60, interval: float = 0.05) -> dict[str, str]:
        """Poll squeue until the job reaches a final state; its scontrol record."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state in FINAL_STATES:
                return self.show_job(job_id)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {state or 'unknown'} after {timeout}s")
            time.sleep(interval)

    def cancel_all(self, timeout: float = 15) -> bool:
        """Cancel every job in the queue and wait until squeue lists none.

        True when the queue emptied within timeout.
        """
        deadline = time.monotonic() + timeout
        ids = self.job_ids()
        if ids:
            self.run("scancel", *ids, check=False)
        while ids and time.monotonic() < deadline:
            time.sleep(0.1)
            ids = self.job_ids()
            if ids:  # jobs submitted meanwhile, or a cancel that was lost
                self.run("scancel", *ids, check=False)
        return not ids

    def logs(self, lines: int = 25) -> str:
        """The tails of the daemon logs, for error messages."""
        parts = []
        logs = self.base_dir / "log"
        for path in (
            logs / "slurmctld.log",
            logs / "slurmctld.out",
            logs / "slurmd.log",
            logs / "slurmd.out",
            self.munge_dir / "munged.log",
            logs / "munged.out",
        ):
            if path.exists():
                parts.append(f"--- {path}\n{_tail(path, lines)}")
        return "\n".join(parts)

    def exports(self) -> str:
        """Shell lines that point Slurm's commands at this cluster."""
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env.items())

    # -- persistence ------------------------------------------------------------

    def _record(self) -> dict:
        return {
            "base_dir": str(self.base_dir),
            "conf": str(self.conf),
            "env": self.env,
            "partition": self.partition,
            "node": self.node,
            "cpus": self.cpus,
            "pids": self.pids,
            "munge_dir": str(self.munge_dir),
            "ports": self.ports,
            "startup_seconds": self.startup_seconds,
            "idle_seconds": self.idle_seconds,
        }

    def save(self) -> None:
        tmp = self.base_dir / "pids.json.tmp"
        tmp.write_text(json.dumps(self._record(), indent=2) + "\n")
        tmp.replace(self.base_dir / "pids.json")

    @classmethod
    def load(cls, base_dir: str | os.PathLike[str]) -> Cluster:
        """The cluster recorded in base_dir/pids.json (started by ``start``)."""
        base = Path(base_dir).resolve()
        rec = json.loads((base / "pids.json").read_text())
        return cls(
            base_dir=base,
            conf=Path(rec["conf"]),
            env=dict(rec["env"]),
            partition=rec["partition"],
            node=rec["node"],
            cpus=int(rec["cpus"]),
            pids={k: int(v) for k, v in rec["pids"].items()},
            munge_dir=Path(rec["munge_dir"]),
            ports={k: int(v) for k, v in rec["ports"].items()},
            startup_seconds=float(rec.get("startup_seconds", 0.0)),
            idle_seconds=float(rec.get("idle_seconds", 0.0)),
        )

    @classmethod
    def bare(cls, base_dir: str | os.PathLike[str]) -> Cluster:
        """A cluster in base_dir known by its paths only (no pids.json)."""
        base = Path(base_dir).resolve()
        conf = base / "slurm.conf"
        return cls(
            base_dir=base,
            conf=conf,
            env={"SLURM_CONF": str(conf)},
            partition=PARTITION,
            node=socket.gethostname().split(".")[0],
            cpus=0,
            pids={},
            munge_dir=(base / "munge").resolve(),
            ports={},
        )

    # -- identity checks (pid reuse, other clusters) ----------------------------

    def _is_ours(self, pid: int) -> bool:
        """Is pid a daemon or slurmstepd of this cluster (not a reused pid)?"""
        if pid in self._procs:
            return True
        env = _read0(pid, "environ")
        if f"{MARKER}={self.base_dir}" in env:
            return True
        cmd = _read0(pid, "cmdline")
        return str(self.conf) in cmd or str(self.munge_dir / "munged.socket") in cmd

    def _marked(self) -> list[int]:
        """Live processes whose environment carries this cluster's MARKER.

        The daemons get it from ``start``; slurmscriptd and slurmstepd inherit
        it (jobs do not: they get their submitter's environment).  This finds
        the cluster's processes even when pids.json is lost or stale.
        """
        tag = f"{MARKER}={self.base_dir}".encode()
        found = []
        for pid in _all_pids():
            if pid == os.getpid():
                continue
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if tag in env.split(b"\0") and _alive(pid):
                found.append(pid)
        return found

    def _leftovers(self, daemons: set[int]) -> list[int]:
        """Marked processes other than daemons (slurmstepd…) and all their descendants.

        A job step outlives a killed slurmd; its slurmstepd carries MARKER.
        Jobs run in their own sessions, so they are found as its descendants.
        """
        me = {os.getpid()}
        p = os.getpid()
        while p and p != 1:  # never our own ancestors
            p = _ppid(p) or 0
            me.add(p)
        children: dict[int, list[int]] = {}
        for pid in _all_pids():
            ppid = _ppid(pid)
            if ppid is not None:
                children.setdefault(ppid, []).append(pid)
        found: list[int] = []
        todo = [p for p in self._marked() if p not in daemons]
        while todo:
            pid = todo.pop()
            if pid in me or pid in found or pid in daemons:
                continue
            found.append(pid)
            todo.extend(children.get(pid, []))
        return [p for p in found if _alive(p)]

    # -- stopping -------------------------------------------------------------

    def stop(self, cancel_timeout: float = 10) -> None:
        """Cancel all jobs, stop the daemons, kill leftover steps, clean up.

        Safe to call twice and on a half-started cluster; daemons missing from
        ``pids`` (a lost pids.json) are found by their MARKER.
        """
        daemons: dict[str, list[int]] = {}
        for name, pid in self.pids.items():
            if _alive(pid) and self._is_ours(pid):
                daemons.setdefault(name, []).append(pid)
        for pid in self._marked():
            comm = (_read0(pid, "comm") or [""])[0].strip()
            if comm in ("slurmd", "slurmctld", "munged") and pid not in daemons.get(comm, []):
                daemons.setdefault(comm, []).append(pid)
        if "slurmctld" in daemons and "munged" in daemons:
            # Without slurmd, cancelled jobs stay COMPLETING: do not wait long.
            wait = cancel_timeout if "slurmd" in daemons else 0.5
            try:
                self.cancel_all(timeout=wait)
            except (OSError, subprocess.SubprocessError):
                pass
        all_daemons = {p for pids in daemons.values() for p in pids}
        _terminate(daemons.get("slurmd", []) + daemons.get("slurmctld", []), self._procs)
        # slurmstepd ignores SIGTERM; the jobs get a short grace.
        _terminate(self._leftovers(all_daemons), self._procs, timeout=0.5)
        _terminate(daemons.get("munged", []), self._procs)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        link = self.base_dir / "munge"
        if link.is_symlink():  # the private dir in /tmp: remove it and the link
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            link.unlink()
        (self.base_dir / "pids.json").unlink(missing_ok=True)
        self.pids = {}


def _slurm_conf(base: Path, munge_dir: Path, node: str, cpus: int, ports: dict[str, int],
                min_job_age: int = 300) -> str:
    return f"""\
# Private single-node test cluster written by tests/slurmcluster.py.
ClusterName=wftest
SlurmctldHost=localhost
SlurmctldPort={ports["slurmctld"]}
SlurmdPort={ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_dir / "munged.socket"}
StateSaveLocation={base / "state"}
SlurmdSpoolDir={base / "spool"}
SlurmctldPidFile={base / "run" / "slurmctld.pid"}
SlurmdPidFile={base / "run" / "slurmd.pid"}
SlurmctldLogFile={base / "log" / "slurmctld.log"}
SlurmdLogFile={base / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=100
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge={min_job_age}
KillWait=2
InactiveLimit=0
MessageTimeout=10
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _setup_munge(base: Path) -> Path:
    """Create the munge dir with a fresh key; its path (maybe in /tmp)."""
    pw = pwd.getpwnam(MUNGE_USER)
    gids = {pw.pw_gid} | set(os.getgrouplist(MUNGE_USER, pw.pw_gid))
    link = base / "munge"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    here = base / "munge"
    if _reachable_by(base, pw.pw_uid, gids) and len(str(here / "munged.socket")) <= _MAX_SOCKET:
        here.mkdir()
        mdir = here
    else:
        mdir = Path(tempfile.mkdtemp(prefix="slurmcluster-munge-", dir="/tmp"))
        link.symlink_to(mdir)
    os.chown(mdir, pw.pw_uid, pw.pw_gid)
    os.chmod(mdir, 0o711)  # munged insists that every user may reach its socket
    key = mdir / "munge.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(1024))
    os.chown(key, pw.pw_uid, pw.pw_gid)
    os.chmod(key, 0o400)
    return mdir


def _wait(what: str, cond, timeout: float, cluster: Cluster, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for name, pid in cluster.pids.items():
            proc = cluster._procs.get(pid)
            if proc is not None and proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {proc.returncode} while waiting for {what}\n"
                    + cluster.logs()
                )
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f}s waiting for {what}\n" + cluster.logs()
            )
        time.sleep(interval)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(
    base_dir: str | os.PathLike[str],
    cpus: int = 32,
    timeout: float = 60,
    wait_scheduler: bool = True,
    min_job_age: int = 300,
) -> Cluster:
    """Start a private cluster in base_dir and wait until its node is idle.

    With wait_scheduler, also wait (up to 10 s more) until slurmctld's main
    scheduler has run once, which happens about 3 s after it starts: until
    then submitted jobs stay pending, so the first job would look slow.

    Raises ClusterError (with the tails of the daemon logs) when a daemon dies
    or the node is not idle within timeout; what was started is stopped.
    """
    t0 = time.monotonic()
    if os.geteuid() != 0:
        raise ClusterError("slurmcluster needs root (slurmd runs jobs as their submitter)")
    munged, slurmctld, slurmd = _which("munged"), _which("slurmctld"), _which("slurmd")
    base = Path(base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    old = Cluster.load(base) if (base / "pids.json").exists() else Cluster.bare(base)
    running = [p for p in old.pids.values() if _alive(p) and old._is_ours(p)] + old._marked()
    if running:
        raise ClusterError(
            f"a cluster is already running in {base} (pids {sorted(set(running))}); "
            f"stop it first: python {__file__} stop {base}"
        )
    old.stop()  # removes a stale pids.json and munge dir
    for sub in ("state", "spool", "run", "log"):
        shutil.rmtree(base / sub, ignore_errors=True)
        (base / sub).mkdir(mode=0o700)
    munge_dir = _setup_munge(base)
    node = socket.gethostname().split(".")[0]
    ports = dict(zip(("slurmctld", "slurmd"), _free_ports(2), strict=True))
    conf = base / "slurm.conf"
    conf.write_text(_slurm_conf(base, munge_dir, node, cpus, ports, min_job_age))
    cluster = Cluster(
        base_dir=base,
        conf=conf,
        env={"SLURM_CONF": str(conf)},
        partition=PARTITION,
        node=node,
        cpus=cpus,
        pids={},
        munge_dir=munge_dir,
        ports=ports,
    )
    daemon_env = {**os.environ, "SLURM_CONF": str(conf), MARKER: str(base)}
    for k in [k for k in daemon_env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del daemon_env[k]  # e.g. when run inside a job of another cluster

    def spawn(name: str, argv: list[str], out: Path, **kw) -> None:
        with open(out, "ab") as f:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=daemon_env,
                start_new_session=True,
                close_fds=True,
                **kw,
            )
        cluster.pids[name] = proc.pid
        cluster._procs[proc.pid] = proc
        cluster.save()

    try:
        pw = pwd.getpwnam(MUNGE_USER)
        sock = munge_dir / "munged.socket"
        spawn(
            "munged",
            [
                munged,
                "-F",
                f"--socket={sock}",
                f"--key-file={munge_dir / 'munge.key'}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            base / "log" / "munged.out",
            user=pw.pw_uid,
            group=pw.pw_gid,
            extra_groups=[],
            cwd=munge_dir,
        )
        _wait("munged's socket", sock.is_socket, timeout, cluster, 0.02)
        spawn(
            "slurmctld",
            [slurmctld, "-D", "-f", str(conf)],
            base / "log" / "slurmctld.out",
            cwd=base,
        )
        _wait("slurmctld's port", lambda: _port_open(ports["slurmctld"]), timeout, cluster, 0.05)
        spawn(
            "slurmd",
            [slurmd, "-D", "-f", str(conf), "-N", node],
            base / "log" / "slurmd.out",
            cwd=base,
        )

        def idle() -> bool:
            r = cluster.run("sinfo", "-h", "-n", node, "-o", "%t", check=False, timeout=30)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        remaining = max(1.0, timeout - (time.monotonic() - t0))
        _wait(f"node {node} to be idle", idle, remaining, cluster, 0.1)
        cluster.idle_seconds = time.monotonic() - t0
        if wait_scheduler:
            # slurmctld's main scheduler first runs ~3 s after start; a job
            # submitted before then waits for it.  Its first run logs the
            # SchedulerParameters line.  Not fatal if missed: only slower.
            log = base / "log" / "slurmctld.log"

            def scheduling() -> bool:
                try:
                    return "SchedulerParameters=" in log.read_text(errors="replace")
                except OSError:
                    return False

            try:
                _wait("the first scheduler run", scheduling, 10, cluster, 0.05)
            except ClusterError:
                if not all(_alive(p) for p in cluster.pids.values()):
                    raise
    except BaseException:
        cluster.stop(cancel_timeout=2)
        raise
    cluster.startup_seconds = time.monotonic() - t0
    cluster.save()
    return cluster


def stop(base_dir: str | os.PathLike[str]) -> None:
    """Stop the cluster in base_dir: the one pids.json records, and any
    process that carries its MARKER (when pids.json is lost)."""
    base = Path(base_dir).resolve()
    if (base / "pids.json").exists():
        Cluster.load(base).stop()
    else:
        Cluster.bare(base).stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = (
        "usage: slurmcluster.py start DIR [--cpus N]   start, print exports, detach\n"
        "       slurmcluster.py stop DIR                stop the cluster in DIR\n"
        "       slurmcluster.py env DIR                 print the exports again\n"
    )
    if len(args) < 2 or args[0] not in ("start", "stop", "env"):
        sys.stderr.write(usage)
        return 2
    cmd, base = args[0], args[1]
    if cmd == "start":
        cpus = 32
        if len(args) == 4 and args[2] == "--cpus":
            cpus = int(args[3])
        elif len(args) != 2:
            sys.stderr.write(usage)
            return 2
        try:
            cluster = start(base, cpus=cpus)
        except ClusterError as e:
            sys.stderr.write(f"slurmcluster: {e}\n")
            return 1
        sys.stdout.write(cluster.exports())
        sys.stderr.write(
            f"slurmcluster: node {cluster.node} ({cluster.cpus} CPUs, partition "
            f"{cluster.partition}) idle after {cluster.idle_seconds:.2f}s, scheduling "
            f"after {cluster.startup_seconds:.2f}s; "
            f"pids in {cluster.base_dir / 'pids.json'}\n"
        )
        # The daemons are in their own sessions: they outlive this process.
        return 0
    if cmd == "env":
        sys.stdout.write(Cluster.load(base).exports())
        return 0
    stop(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
