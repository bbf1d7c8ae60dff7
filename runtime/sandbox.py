"""Running a command inside an unpacked image: bubblewrap (default) or podman argv.

Standard library only, shipped beside the job wrapper. Nothing here starts a
process except :func:`probe_runtime`; the functions build argv lists for the
wrapper to run, so they cost microseconds (one ``listdir`` of the rootfs top
and of each image directory on the way to a bind).

Under bubblewrap the job sees: the image's files, read-only; its job
directory read-write at the same path as outside (relative and absolute paths
of inputs and outputs keep working); a private /tmp, /proc and /dev; no
network, no host environment (``--clearenv``, then only the variables given),
new user, pid, ipc, uts, cgroup and network namespaces; it dies with its
parent. The command runs as ``/bin/sh -c COMMAND`` with the image's /bin/sh.

Why the root is assembled rather than bound whole: bubblewrap (0.8 here) must
create a mount point for the job directory, and cannot inside a read-only
``--ro-bind ROOTFS /`` ("Can't mkdir parents for /work/job: Read-only file
system"), while a writable ``--bind ROOTFS /`` would create those directories
in the shared image cache and let jobs write into it. So, as apptainer's
"underlay" does, the new root is bubblewrap's own tmpfs with each top-level
entry of the rootfs bound read-only onto it; an image directory that lies on
the path to a bind is recreated and its entries bound one level down. The
tmpfs root is remounted read-only at the end. The cache is never written.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "DEFAULT_PATH",
    "RuntimeMissing",
    "RuntimeUnusable",
    "bwrap_argv",
    "container_env",
    "find_runtime",
    "podman_argv",
    "probe_runtime",
]

#: PATH when the image's config sets none (Docker's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RUNTIMES = {
    "bwrap": ("bwrap", "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
    "bubblewrap": ("bwrap", "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
    "podman": ("podman", "podman is not installed: apt-get install podman"),
}
#: Top-level names the sandbox mounts itself; the image's own are hidden.
_MANAGED = ("proc", "dev", "tmp")


class RuntimeMissing(RuntimeError):
    """The container runtime asked for is not installed."""


class RuntimeUnusable(RuntimeError):
    """The runtime is installed but cannot create its namespaces here."""


def find_runtime(name: str = "bwrap") -> str:
    """The absolute path of a container runtime (``bwrap`` or ``podman``) on PATH.

    Raises RuntimeMissing with the install hint, ValueError for an unknown name.
    """
    if name not in _RUNTIMES:
        raise ValueError(f"unknown container runtime {name!r}: expected bwrap or podman")
    exe, hint = _RUNTIMES[name]
    found = shutil.which(exe)
    if found is None:
        raise RuntimeMissing(hint)
    return found


def probe_runtime(exe: str) -> None:
    """Check that bubblewrap can create the namespaces a job needs (one ~5 ms run).

    Raises RuntimeUnusable quoting bwrap's own message (e.g. "No permissions to
    create new namespace" where unprivileged user namespaces are disabled).
    """
    argv = [exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        said = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise RuntimeUnusable(
            f"{exe} cannot create namespaces on this machine ({' '.join(argv[1:])}): {said}; "
            "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces, or AppArmor's kernel.apparmor_restrict_unprivileged_userns)"
        )


def container_env(image_env: Iterable[str], extra: Mapping[str, str] | None = None) -> dict:
    """The job's whole environment: the image config's Env ("NAME=value"), then ``extra``.

    PATH defaults to DEFAULT_PATH when the image sets none; nothing comes from the host.
    """
    env: dict[str, str] = {}
    for item in image_env:
        name, sep, value = item.partition("=")
        if sep and name:
            env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(extra or {})
    return env


def _absolute(path: str, what: str) -> str:
    if not os.path.isabs(path):
        raise ValueError(f"{what} must be an absolute path, found {path!r}")
    return os.path.normpath(path)


def _check_env(env: Mapping[str, str]) -> None:
    for k, v in env.items():
        if not k or "=" in k or "\x00" in k or not isinstance(v, str) or "\x00" in v:
            raise ValueError(f"environment entry {k!r}={v!r} cannot be passed to a container")


def _underlay(rootfs: str, binds: Sequence[str]) -> list[str]:
    """Bind each rootfs entry read-only onto the tmpfs root, splitting dirs that hold a bind."""
    args: list[str] = []

    def walk(host_dir: str, inside: str) -> None:
        for name in sorted(os.listdir(host_dir)):
            if inside == "/" and name in _MANAGED:
                continue
            src = os.path.join(host_dir, name)
            dst = os.path.join(inside, name)
            st = os.lstat(src)
            if any(b == dst or b.startswith(dst + "/") for b in binds):
                # The job's path wins over whatever the image has there.
                if stat.S_ISDIR(st.st_mode) and dst not in binds:
                    args.extend(("--dir", dst))
                    walk(src, dst)
            elif stat.S_ISLNK(st.st_mode):
                args.extend(("--symlink", os.readlink(src), dst))
            elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                args.extend(("--ro-bind", src, dst))

    walk(rootfs, "/")
    return args


def bwrap_argv(
    rootfs: str,
    workdir_bind: str,
    cwd_in_container: str,
    command: str,
    env: Mapping[str, str],
    network: bool = False,
    *,
    ro_binds: Sequence[str] = (),
    rw_binds: Sequence[str] = (),
    bwrap: str = "bwrap",
) -> list[str]:
    """The argv that runs ``/bin/sh -c command`` from ``rootfs`` under bubblewrap.

    ``workdir_bind`` (the job directory) is bound read-write at the same path,
    each of ``ro_binds`` (inputs living outside it, or a part of the job
    directory to protect) read-only, each of ``rw_binds`` read-write; deeper
    binds are mounted after the ones that hold them, so they win;
    ``env`` is the whole environment (see :func:`container_env`); ``network``
    keeps the host's network namespace. Paths must be absolute.
    """
    rootfs = _absolute(rootfs, "rootfs")
    jobdir = _absolute(workdir_bind, "workdir_bind")
    cwd = _absolute(cwd_in_container, "cwd_in_container")
    _check_env(env)
    binds = [(jobdir, "--bind")] + [(_absolute(p, "ro_binds"), "--ro-bind") for p in ro_binds] \
        + [(_absolute(p, "rw_binds"), "--bind") for p in rw_binds]
    binds.sort(key=lambda b: b[0].count("/"))  # a parent is mounted before what it holds
    argv = [bwrap, *_underlay(rootfs, [p for p, _ in binds])]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path, how in binds:
        argv += [how, path, path]
    argv += ["--remount-ro", "/", "--unshare-all"]
    if network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--clearenv"]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    argv += ["--chdir", cwd, "/bin/sh", "-c", command]
    return argv


def podman_argv(
    rootfs: str,
    workdir_bind: str,
    cwd_in_container: str,
    command: str,
    env: Mapping[str, str],
    network: bool = False,
    *,
    ro_binds: Sequence[str] = (),
    rw_binds: Sequence[str] = (),
    podman: str = "podman",
) -> list[str]:
    """The argv that runs ``/bin/sh -c command`` from ``rootfs`` with ``podman run --rootfs``.

    Same contract as :func:`bwrap_argv`. The root is ``--read-only`` so jobs
    cannot write into the cache, but podman itself may create mount points
    and /etc/hosts-style files in it when it sets the container up.
    """
    rootfs = _absolute(rootfs, "rootfs")
    jobdir = _absolute(workdir_bind, "workdir_bind")
    cwd = _absolute(cwd_in_container, "cwd_in_container")
    _check_env(env)
    argv = [podman, "run", "--rm"]
    if not network:
        argv += ["--network", "none"]
    argv += [
        "--runtime", "runc",
        "--ulimit", "nofile=1024:1024",
        "--ulimit", "nproc=1024:1024",
        "--read-only",
        "-v", f"{jobdir}:{jobdir}",
    ]  # fmt: skip
    for p in ro_binds:
        p = _absolute(p, "ro_binds")
        argv += ["-v", f"{p}:{p}:ro"]
    for p in rw_binds:
        p = _absolute(p, "rw_binds")
        argv += ["-v", f"{p}:{p}"]
    argv += ["-w", cwd]
    for k, v in env.items():
        argv += ["--env", f"{k}={v}"]
    argv += ["--rootfs", rootfs, "/bin/sh", "-c", command]
    return argv
