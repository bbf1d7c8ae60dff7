#!/usr/bin/env python3
"""Build small container images offline: docker-archive and OCI-archive tars.

A test helper (and the builder of ``examples/containers``), not product code.
The root file system is ``/bin/busybox`` (Debian's busybox-static) with applet
symlinks, an ``/etc/os-release`` saying ``ID=wf-busybox``, and whatever extra
files the caller adds; the config sets Env and WorkingDir. Every tar is
deterministic: sorted members, fixed mtimes, uid/gid 0, gzip without a
timestamp, JSON with sorted keys; the same arguments give the same bytes.

Files are given as ``{"path/in/image": spec}`` where spec is one of::

    b"bytes"                   regular file, mode 0644
    (b"bytes", 0o755)          regular file with a mode
    ("dir", 0o755)             directory
    ("symlink", "target")      symlink, target stored as given
    ("link", "other/member")   hard link
    ("fifo",) | ("chr", major, minor)

Whiteouts are plain empty files: ``"etc/.wh.motd": b""``,
``"opt/.wh..wh..opq": b""``. A layer may also be given as raw ``bytes`` (used
as the blob as is), and ``sort=False`` keeps the caller's member order, for
hand-made hostile layers.

As a script::

    python tests/runtime/imagebuild.py --format docker|oci [--gzip|--no-gzip]
        [--add PATH_IN_IMAGE=LOCAL_FILE]... [--env NAME=VALUE]... [--workdir DIR] OUT.tar
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "APPLETS",
    "BUSYBOX",
    "MTIME",
    "Built",
    "build_docker_archive",
    "build_oci_archive",
    "busybox_files",
    "layer_tar",
    "main",
    "tamper",
]

BUSYBOX = "/bin/busybox"
MTIME = 1_700_000_000
APPLETS = (
    "sh", "cat", "wc", "sed", "awk", "tr", "sort", "echo", "ls", "head", "sha256sum",
    "true", "false", "env", "grep", "mkdir", "cp", "rm", "touch", "id", "cut", "tail",
    "printf", "uniq", "sleep",
)  # fmt: skip
OS_RELEASE = b'NAME="wf test image"\nID=wf-busybox\nPRETTY_NAME="wf busybox test image"\n'


@dataclass(frozen=True)
class Built:
    """What a builder wrote; digests are ``sha256:<hex>``, ``sha256`` is the whole file's hex."""

    path: str
    format: str
    sha256: str
    manifest_digest: str
    config_digest: str
    layers: tuple[str, ...]  # member names of the layer blobs, bottom first
    layer_digests: tuple[str, ...]  # of each blob as stored
    diff_ids: tuple[str, ...]


def busybox_files(symlinks: str = "relative", busybox: str = BUSYBOX) -> dict:
    """A minimal root: busybox and its applets, /etc, and empty mount points."""
    with open(busybox, "rb") as f:
        exe = f.read()
    target = "busybox" if symlinks == "relative" else "/bin/busybox"
    files: dict = {
        "bin": ("dir", 0o755),
        "bin/busybox": (exe, 0o755),
        "etc": ("dir", 0o755),
        "etc/os-release": OS_RELEASE,
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
        "dev": ("dir", 0o755),
        "proc": ("dir", 0o555),
        "sys": ("dir", 0o555),
        "tmp": ("dir", 0o1777),
        "root": ("dir", 0o700),
        "work": ("dir", 0o755),
    }
    for applet in APPLETS:
        files[f"bin/{applet}"] = ("symlink", target)
    return files


def layer_tar(files: Mapping[str, object], sort: bool = True, mtime: int = MTIME) -> bytes:
    """One uncompressed layer tar holding ``files`` (see the module docstring for specs)."""
    buf = io.BytesIO()
    names = sorted(files) if sort else list(files)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in names:
            spec = files[name]
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mtime, 0, 0, "root", "root"
            data = None
            if isinstance(spec, bytes):
                spec = (spec, 0o644)
            kind = spec[0]
            if isinstance(kind, bytes):
                data, ti.mode, ti.size = kind, spec[1], len(kind)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, spec[1]
            elif kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, spec[1], 0o777
            elif kind == "link":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, spec[1], 0o644
            elif kind == "fifo":
                ti.type, ti.mode = tarfile.FIFOTYPE, 0o644
            elif kind == "chr":
                ti.type, ti.mode, ti.devmajor, ti.devminor = (
                    tarfile.CHRTYPE,
                    0o666,
                    spec[1],
                    spec[2],
                )
            else:
                raise ValueError(f"{name}: unknown file spec {spec!r}")
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as g:
        g.write(data)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _layers(files, layers, base, symlinks, compress, sort) -> list[tuple[bytes, bytes]]:
    """(blob as stored, uncompressed tar) per layer."""
    first = dict(busybox_files(symlinks)) if base else {}
    first.update(files or {})
    specs = ([first] if first or not layers else []) + list(layers)
    out = []
    for spec in specs:
        tar = spec if isinstance(spec, bytes) else layer_tar(spec, sort=sort)
        blob = _gzip(tar) if compress and not isinstance(spec, bytes) else tar
        out.append((blob, tar))
    return out


def _config(diff_ids, env, workdir, cmd, entrypoint) -> bytes:
    cfg = {"Env": list(env), "WorkingDir": workdir, "Cmd": list(cmd)}
    if entrypoint is not None:
        cfg["Entrypoint"] = list(entrypoint)
    return _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": "tests/runtime/imagebuild.py"} for _ in diff_ids],
        }
    )


def _write_outer(path: str, members: dict[str, bytes]) -> str:
    """Write the archive itself (directories implied by member names); return its sha256."""
    names = set(members)
    for name in members:
        parts = name.split("/")[:-1]
        names.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    tmp = f"{path}.tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(names):
            ti = tarfile.TarInfo(name.rstrip("/"))
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0, 0, "root", "root"
            if name.endswith("/"):
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.mode, ti.size = 0o644, len(members[name])
                tf.addfile(ti, io.BytesIO(members[name]))
    os.replace(tmp, path)
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def build_docker_archive(
    path: str | os.PathLike[str],
    files: Mapping[str, object] | None = None,
    *,
    layers: Sequence[Mapping[str, object] | bytes] = (),
    base: bool = True,
    env: Sequence[str] = ("PATH=/bin",),
    workdir: str = "/work",
    cmd: Sequence[str] = ("/bin/sh",),
    entrypoint: Sequence[str] | None = None,
    tag: str = "wf-test:latest",
    layout: str = "legacy",
    compress: bool = False,
    symlinks: str = "relative",
    sort: bool = True,
) -> Built:
    """Write a ``docker save`` archive: busybox root plus ``files`` in layer 1, then ``layers``.

    ``layout="legacy"`` writes ``<id>/layer.tar`` members (Docker up to 24);
    ``"blobs"`` writes ``blobs/sha256/<hex>`` with an OCI index beside
    manifest.json (Docker 25 and later). Docker itself never compresses
    layers; ``compress=True`` does, to test gzip detection.
    """
    path = os.fspath(path)
    blobs = _layers(files, layers, base, symlinks, compress, sort)
    diff_ids = [_sha(tar) for _, tar in blobs]
    config = _config(diff_ids, env, workdir, cmd, entrypoint)
    members: dict[str, bytes] = {}
    names, parent = [], ""
    for (blob, _), diff_id in zip(blobs, diff_ids, strict=True):
        if layout == "legacy":
            layer_id = hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()
            name = f"{layer_id}/layer.tar"
            members[f"{layer_id}/VERSION"] = b"1.0"
            members[f"{layer_id}/json"] = _json(
                {"id": layer_id, "parent": parent} if parent else {"id": layer_id}
            )
            parent = layer_id
        else:
            name = f"blobs/sha256/{_sha(blob)[7:]}"
        members[name] = blob
        names.append(name)
    config_name = (
        f"{_sha(config)[7:]}.json" if layout == "legacy" else f"blobs/sha256/{_sha(config)[7:]}"
    )
    members[config_name] = config
    manifest = _json([{"Config": config_name, "RepoTags": [tag], "Layers": names}])
    members["manifest.json"] = manifest
    repo, _, version = tag.rpartition(":")
    members["repositories"] = _json({repo: {version: parent or _sha(config)[7:]}})
    if layout == "blobs":
        oci_manifest = _oci_manifest(config, blobs, compress)
        members[f"blobs/sha256/{_sha(oci_manifest)[7:]}"] = oci_manifest
        members["index.json"] = _oci_index(oci_manifest, tag)
        members["oci-layout"] = _json({"imageLayoutVersion": "1.0.0"})
    sha256 = _write_outer(path, members)
    return Built(
        path, "docker-archive", sha256, _sha(manifest), _sha(config), tuple(names),
        tuple(_sha(b) for b, _ in blobs), tuple(diff_ids),
    )  # fmt: skip


def _oci_manifest(config: bytes, blobs, compress: bool) -> bytes:
    layer_type = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": _sha(blob), "size": len(blob)}
                for blob, _ in blobs
            ],
        }
    )


def _oci_index(manifest: bytes, tag: str) -> bytes:
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _sha(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )


def build_oci_archive(
    path: str | os.PathLike[str],
    files: Mapping[str, object] | None = None,
    *,
    layers: Sequence[Mapping[str, object] | bytes] = (),
    base: bool = True,
    env: Sequence[str] = ("PATH=/bin",),
    workdir: str = "/work",
    cmd: Sequence[str] = ("/bin/sh",),
    entrypoint: Sequence[str] | None = None,
    tag: str = "latest",
    compress: bool = True,
    symlinks: str = "relative",
    sort: bool = True,
) -> Built:
    """Write an OCI image layout as a tar: oci-layout, index.json, blobs/sha256/*.

    Layers are gzip-compressed unless ``compress=False``.
    """
    path = os.fspath(path)
    blobs = _layers(files, layers, base, symlinks, compress, sort)
    diff_ids = [_sha(tar) for _, tar in blobs]
    config = _config(diff_ids, env, workdir, cmd, entrypoint)
    manifest = _oci_manifest(config, blobs, compress)
    members = {f"blobs/sha256/{_sha(b)[7:]}": b for b in (config, manifest, *(b for b, _ in blobs))}
    members["index.json"] = _oci_index(manifest, tag)
    members["oci-layout"] = _json({"imageLayoutVersion": "1.0.0"})
    sha256 = _write_outer(path, members)
    names = tuple(f"blobs/sha256/{_sha(b)[7:]}" for b, _ in blobs)
    return Built(
        path, "oci-archive", sha256, _sha(manifest), _sha(config), names,
        tuple(_sha(b) for b, _ in blobs), tuple(diff_ids),
    )  # fmt: skip


def tamper(path: str | os.PathLike[str], member: str, at: int | None = None) -> None:
    """Flip one byte of ``member``'s data inside the archive at ``path`` (default: the middle)."""
    with tarfile.open(path) as tf:
        ti = tf.getmember(member)
    pos = ti.offset_data + (ti.size // 2 if at is None else at)
    with open(path, "r+b") as f:
        f.seek(pos)
        byte = f.read(1)
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0xFF]))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a busybox container image archive offline.")
    p.add_argument("out", help="the archive to write")
    p.add_argument("--format", choices=("docker", "oci"), default="docker")
    p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help="compress layers (default: docker no, oci yes)")  # fmt: skip
    p.add_argument("--add", action="append", default=[], metavar="PATH=FILE",
                   help="add a local file at PATH in the image (mode kept)")  # fmt: skip
    p.add_argument("--env", action="append", default=None, metavar="NAME=VALUE")
    p.add_argument("--workdir", default="/work")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    files: dict = {}
    for item in args.add:
        dest, sep, src = item.partition("=")
        if not sep:
            p.error(f"--add wants PATH=FILE, found {item!r}")
        with open(src, "rb") as f:
            files[dest.lstrip("/")] = (f.read(), os.stat(src).st_mode & 0o777)
    kw: dict = {"env": args.env or ["PATH=/bin"], "workdir": args.workdir}
    if args.gzip is not None:
        kw["compress"] = args.gzip
    if args.format == "docker":
        built = build_docker_archive(args.out, files, tag=args.tag or "wf-test:latest", **kw)
    else:
        built = build_oci_archive(args.out, files, tag=args.tag or "latest", **kw)
    print(f"{built.sha256}  {built.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
