"""Container images as data: inspect and unpack docker-archive and OCI-archive tars.

Standard library only, like the job wrapper, so the file can be shipped beside
it to a worker node. An image is a file staged and verified like any input;
this module reads it, checks every blob it uses against its digest, and
unpacks the layers into a root file system for :mod:`runtime.sandbox`.

Formats, told apart by the members of the tar:

- ``docker-archive`` (``docker save``): ``manifest.json`` lists one image, its
  config member and its layer members (``<id>/layer.tar`` before Docker 25,
  ``blobs/sha256/<hex>`` since). Layers are checked against the config's
  ``rootfs.diff_ids`` (sha256 of the uncompressed layer tar), and against the
  member name too where it is a ``blobs/sha256/<hex>`` path.
- ``oci-archive`` (an OCI image layout in a tar): ``oci-layout`` and
  ``index.json``; the manifest, config and layers are ``blobs/sha256/<hex>``
  and each must hash to its descriptor's digest (and the uncompressed layers to
  the config's diff_ids). An index of several manifests is narrowed to this
  machine's platform.

Digests are written the OCI way, ``sha256:<64 hex>``. Layers may be plain,
gzip, bzip2 or xz tars (told by their first bytes); zstd needs a module that
Python 3.11 lacks and is refused with a clear message.

Unpacking (:func:`unpack_image`) happens once per image sha256 into
``CACHE/<sha256>/rootfs``, built in a temporary sibling and renamed into place
with its completion marker, so a half-unpacked root never sits under the final
name. Nothing in a layer may write outside the root: absolute names, ``..``,
members reached through a symlink, hard links leaving the root are refused;
device files and fifos are skipped; setuid and setgid bits are dropped;
symlinks are created as they are (their targets are resolved only inside the
container). OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are applied.
Owners are not restored: the files belong to whoever unpacks.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import json
import lzma
import os
import platform
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass

__all__ = [
    "DOCKER_ARCHIVE",
    "MARKER",
    "OCI_ARCHIVE",
    "ImageError",
    "ImageInfo",
    "inspect_image",
    "unpack_image",
    "unpacked_info",
]

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"

#: Written last inside the temporary directory, so it is there exactly when the rootfs is whole.
MARKER = "unpacked.json"
MARKER_VERSION = 1

_CHUNK = 1 << 20
#: Manifests, indexes and configs are read whole; no honest one comes near this.
_SMALL_LIMIT = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}
_NO_SINGULARITY = (
    "singularity images cannot run locally: no apptainer/singularity runtime on this machine"
)


class ImageError(ValueError):
    """An image file that cannot be used: not an image, a missing or tampered blob, an unsafe member."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image archive holds; every digest is ``sha256:<hex>``."""

    format: str  # DOCKER_ARCHIVE | OCI_ARCHIVE
    manifest_digest: str  # of the manifest bytes as stored (docker: the whole manifest.json)
    config_digest: str  # of the config bytes as stored
    layers: tuple[str, ...]  # tar member names of the layer blobs, bottom layer first
    layer_digests: tuple[str | None, ...]  # digest of each blob as stored; None: not declared
    diff_ids: tuple[str, ...]  # digest of each uncompressed layer tar (config rootfs.diff_ids)
    env: tuple[str, ...]  # config Env, "NAME=value"
    working_dir: str  # config WorkingDir, "" when unset
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    tags: tuple[str, ...]  # docker RepoTags, or the OCI ref.name annotation


# ---------------------------------------------------------------- inspecting


def inspect_image(path: str | os.PathLike[str], verify_layers: bool = True) -> ImageInfo:
    """Read an image archive's manifest and config; check every blob against its digest.

    With ``verify_layers`` (the default) every layer is read and hashed too:
    one pass over the file, decompressing the compressed layers. Raises
    ImageError for anything that is not a usable image, naming the member and
    the digests; OSError if the file cannot be read.
    """
    path = os.fspath(path)
    with _open_image(path) as tf:
        members = _members(tf)
        info = _inspect(tf, members, path)
        if verify_layers:
            for i in range(len(info.layers)):
                _read_layer(tf, members, info, i, path, None)
    return info


def _open_image(path: str) -> tarfile.TarFile:
    _refuse_foreign(path)
    try:
        return tarfile.open(path, "r:*")
    except tarfile.TarError as e:
        raise ImageError(f"{path}: not a container image archive (not a tar file: {e})") from None


def _inspect(tf: tarfile.TarFile, members: dict, path: str) -> ImageInfo:
    if "manifest.json" in members:
        return _inspect_docker(tf, members, path)
    if "oci-layout" in members and "index.json" in members:
        return _inspect_oci(tf, members, path)
    found = ", ".join(sorted(members)[:8]) or "nothing"
    raise ImageError(
        f"{path}: not a container image archive: found neither manifest.json "
        f"(docker save) nor oci-layout + index.json (OCI image layout); it holds {found}"
    )


def _refuse_foreign(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(64)
    if (
        head.startswith(b"#!/usr/bin/env run-singularity")
        or head[32:41] == b"SIF_MAGIC"
        or head[:4] == b"hsqs"  # squashfs: a Singularity 2 image
        or path.endswith((".sif", ".simg"))
    ):
        raise ImageError(f"{path}: {_NO_SINGULARITY}")


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _members(tf: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {_norm(m.name): m for m in tf.getmembers()}


def _member(members: dict, name: str, what: str, path: str) -> tarfile.TarInfo:
    m = members.get(_norm(name))
    if m is None:
        raise ImageError(f"{path}: missing blob {name!r} ({what})")
    if not (m.isfile() or m.issym() or m.islnk()):
        raise ImageError(f"{path}: {what} {name!r} is not a file")
    return m


def _open_member(tf, members, name: str, what: str, path: str):
    try:
        f = tf.extractfile(_member(members, name, what, path))
    except KeyError:  # a link to a member that is not there
        f = None
    if f is None:
        raise ImageError(f"{path}: missing blob {name!r} ({what})")
    return f


def _read_small(tf, members, name: str, what: str, path: str) -> bytes:
    f = _open_member(tf, members, name, what, path)
    data = f.read(_SMALL_LIMIT + 1)
    if len(data) > _SMALL_LIMIT:
        raise ImageError(f"{path}: {what} {name!r} is larger than {_SMALL_LIMIT >> 20} MiB")
    return data


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: object, what: str, path: str) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ImageError(f"{path}: {what}: expected a sha256:<hex> digest, found {digest!r}")
    hexpart = digest[len("sha256:") :]
    if not _SHA256.fullmatch(hexpart):
        raise ImageError(f"{path}: {what}: malformed digest {digest!r}")
    return hexpart


def _json(data: bytes, what: str, path: str):
    try:
        return json.loads(data)
    except ValueError as e:
        raise ImageError(f"{path}: {what} is not valid JSON: {e}") from None


def _mismatch(path: str, what: str, expected: str, actual: str) -> ImageError:
    return ImageError(f"{path}: {what}: sha256 mismatch: expected {expected}, found {actual}")


def _named_digest(name: str) -> str | None:
    """The digest a member name carries: blobs/sha256/<hex> or <hex>.json."""
    base = _norm(name).rsplit("/", 1)[-1]
    base = base[: -len(".json")] if base.endswith(".json") else base
    return "sha256:" + base if _SHA256.fullmatch(base) else None


def _strings(value: object, what: str, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{path}: config {what} must be a list of strings, found {value!r}")
    return tuple(value)


def _from_config(raw: bytes, n_layers: int, path: str) -> dict:
    config = _json(raw, "the image config", path)
    if not isinstance(config, dict):
        raise ImageError(f"{path}: the image config must be a JSON object")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    diff_ids = _strings(diff_ids, "rootfs.diff_ids", path)
    if len(diff_ids) != n_layers:
        raise ImageError(
            f"{path}: the manifest lists {n_layers} layers but the config's "
            f"rootfs.diff_ids lists {len(diff_ids)}"
        )
    for i, d in enumerate(diff_ids):
        _hex(d, f"config rootfs.diff_ids[{i}]", path)
    cfg = config.get("config") or {}
    if not isinstance(cfg, dict):
        raise ImageError(f"{path}: config 'config' must be a JSON object")
    wd = cfg.get("WorkingDir") or ""
    if not isinstance(wd, str):
        raise ImageError(f"{path}: config WorkingDir must be a string, found {wd!r}")
    return {
        "diff_ids": diff_ids,
        "env": _strings(cfg.get("Env"), "Env", path),
        "working_dir": wd,
        "entrypoint": _strings(cfg.get("Entrypoint"), "Entrypoint", path),
        "cmd": _strings(cfg.get("Cmd"), "Cmd", path),
    }


def _inspect_docker(tf, members, path: str) -> ImageInfo:
    raw = _read_small(tf, members, "manifest.json", "manifest", path)
    manifest = _json(raw, "manifest.json", path)
    if not isinstance(manifest, list) or not manifest:
        raise ImageError(f"{path}: manifest.json must be a non-empty JSON list")
    if len(manifest) > 1:
        raise ImageError(
            f"{path}: manifest.json lists {len(manifest)} images; save one image per file"
        )
    entry = manifest[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise ImageError(f"{path}: manifest.json entry has no 'Config' member name")
    layers = _strings(entry.get("Layers"), "manifest.json 'Layers'", path)
    config_raw = _read_small(tf, members, entry["Config"], "config", path)
    config_digest = _digest(config_raw)
    named = _named_digest(entry["Config"])
    if named is not None and named != config_digest:
        raise _mismatch(path, f"config {entry['Config']!r}", named, config_digest)
    for name in layers:
        _member(members, name, "layer", path)
    return ImageInfo(
        format=DOCKER_ARCHIVE,
        manifest_digest=_digest(raw),
        config_digest=config_digest,
        layers=tuple(_norm(n) for n in layers),
        layer_digests=tuple(
            _named_digest(n) if _norm(n).startswith("blobs/") else None for n in layers
        ),
        tags=_strings(entry.get("RepoTags"), "manifest.json 'RepoTags'", path),
        **_from_config(config_raw, len(layers), path),
    )


def _blob(tf, members, desc: object, what: str, path: str) -> bytes:
    if not isinstance(desc, dict):
        raise ImageError(f"{path}: {what}: descriptor must be a JSON object, found {desc!r}")
    digest = desc.get("digest")
    name = f"blobs/sha256/{_hex(digest, what, path)}"
    data = _read_small(tf, members, name, what, path)
    actual = _digest(data)
    if actual != digest:
        raise _mismatch(path, f"{what} {name}", digest, actual)
    if isinstance(desc.get("size"), int) and desc["size"] != len(data):
        raise ImageError(
            f"{path}: {what} {name}: size {len(data)} does not match its descriptor's {desc['size']}"
        )
    return data


def _pick(index: object, what: str, path: str) -> dict:
    """The one manifest of an index, narrowed to this machine's platform if it lists several."""
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ImageError(f"{path}: {what} has no 'manifests' list")
    found = [d for d in index["manifests"] if isinstance(d, dict)]
    if len(found) > 1:
        arch = _ARCH.get(platform.machine(), platform.machine())
        found = [
            d
            for d in found
            if (d.get("platform") or {}).get("os", "linux") == "linux"
            and (d.get("platform") or {}).get("architecture", arch) == arch
            and "vnd.docker.reference.type" not in (d.get("annotations") or {})
        ]
    if len(found) != 1:
        raise ImageError(
            f"{path}: {what} lists {len(found) or 'no'} manifests for this platform; "
            "expected exactly one image"
        )
    return found[0]


def _inspect_oci(tf, members, path: str) -> ImageInfo:
    layout = _json(_read_small(tf, members, "oci-layout", "oci-layout", path), "oci-layout", path)
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise ImageError(f"{path}: oci-layout has no imageLayoutVersion")
    index = _json(_read_small(tf, members, "index.json", "index", path), "index.json", path)
    desc = _pick(index, "index.json", path)
    tags = ()
    for _depth in range(3):
        ref = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        tags = (ref,) if isinstance(ref, str) else tags
        raw = _blob(tf, members, desc, "manifest", path)
        manifest = _json(raw, f"manifest {desc['digest']}", path)
        nested = isinstance(manifest, dict) and "manifests" in manifest and "layers" not in manifest
        if desc.get("mediaType") not in _INDEX_TYPES and not nested:
            break
        desc = _pick(manifest, f"image index {desc['digest']}", path)
    else:
        raise ImageError(f"{path}: image indexes nested more than 3 deep")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise ImageError(f"{path}: the manifest {desc['digest']} has no 'layers' list")
    config_raw = _blob(tf, members, manifest.get("config"), "config", path)
    layers, digests = [], []
    for i, ld in enumerate(manifest["layers"]):
        if not isinstance(ld, dict):
            raise ImageError(f"{path}: layer {i}: descriptor must be a JSON object")
        name = f"blobs/sha256/{_hex(ld.get('digest'), f'layer {i}', path)}"
        _member(members, name, f"layer {i}", path)
        layers.append(name)
        digests.append(ld["digest"])
    return ImageInfo(
        format=OCI_ARCHIVE,
        manifest_digest=desc["digest"],
        config_digest=manifest["config"]["digest"],
        layers=tuple(layers),
        layer_digests=tuple(digests),
        tags=tags,
        **_from_config(config_raw, len(layers), path),
    )


# ---------------------------------------------------------------- reading layers


class _Hashing(io.RawIOBase):
    """Passes reads through, hashing every byte that goes by."""

    def __init__(self, f) -> None:
        super().__init__()
        self.f = f
        self.h = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        if n:
            self.h.update(memoryview(b)[:n])
        return n or 0

    def drain(self) -> None:
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


_BAD_DATA = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def _decompressor(head: bytes, blob: _Hashing, what: str):
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=blob, mode="rb")
    if head[:3] == b"BZh":
        return bz2.BZ2File(blob)
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(blob)
    if head[:4] == b"\x28\xb5\x2f\xfd":
        raise ImageError(
            f"{what} is zstd-compressed, which Python 3.11's standard library cannot read; "
            "save the image with gzip layers (e.g. docker save, or skopeo copy --dest-compress-format gzip)"
        )
    return None


def _read_layer(tf, members, info: ImageInfo, i: int, path: str, unpacker) -> None:
    """Read layer ``i`` once, hashing it as stored and uncompressed; unpack it if asked.

    A digest mismatch wins over any other error: a tampered layer often also
    fails to decompress, and the mismatch is what the user must hear about.
    """
    name = info.layers[i]
    what = f"{path}: layer {i + 1} of {len(info.layers)} ({name})"
    raw = _open_member(tf, members, name, f"layer {i + 1}", path)
    head = raw.read(6)
    raw.seek(0)
    blob = _Hashing(raw)
    inner = _decompressor(head, blob, what)
    content = _Hashing(inner) if inner is not None else blob
    failure: BaseException | None = None
    try:
        if unpacker is None:
            content.drain()
        else:
            with tarfile.open(fileobj=content, mode="r|", bufsize=_CHUNK) as lt:
                unpacker.layer(lt, what)
            content.drain()  # the end-of-archive blocks and padding are part of the digest
    except (*_BAD_DATA, ImageError, OSError) as e:
        failure = e
        try:
            content.drain()
        except (*_BAD_DATA, OSError):
            pass
    try:
        blob.drain()
    except OSError:
        pass
    declared = info.layer_digests[i]
    if declared is not None and blob.digest() != declared:
        raise ImageError(
            f"{what}: sha256 mismatch: expected {declared}, found {blob.digest()}"
        ) from failure
    if content.digest() != info.diff_ids[i]:
        partial = f" (of what could be read: {failure})" if isinstance(failure, _BAD_DATA) else ""
        raise ImageError(
            f"{what} uncompressed, diff_id: sha256 mismatch: "
            f"expected {info.diff_ids[i]}, found {content.digest()}{partial}"
        ) from failure
    if failure is None:
        return
    if isinstance(failure, _BAD_DATA):
        raise ImageError(f"{what}: not a readable layer tar: {failure}") from failure
    raise failure


# ---------------------------------------------------------------- unpacking


def _parts(name: str, what: str) -> list[str]:
    if "\x00" in name:
        raise ImageError(f"{what}: member name {name!r} holds a NUL byte")
    if name.startswith("/"):
        raise ImageError(
            f"{what}: member {name!r} is an absolute path (it would land outside the root)"
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"{what}: member {name!r} climbs out of the root with '..'")
    return parts


class _Unpacker:
    """Applies layers to ``root``; never writes outside it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dirs: dict[str, tuple[int, int]] = {}  # path -> (mode, mtime), applied at the end
        self.skipped: list[str] = []
        self.written: set[str] = set()  # paths this layer wrote: whiteouts only hide lower ones

    def layer(self, lt: tarfile.TarFile, what: str) -> None:
        self.written = set()
        for m in lt:
            self.member(lt, m, what)

    def parent(self, parts: list[str], name: str, what: str, create: bool) -> str | None:
        """The directory holding ``parts[-1]``, walked with lstat: a symlink on the way is refused."""
        cur = self.root
        for i, p in enumerate(parts[:-1]):
            nxt = os.path.join(cur, p)
            try:
                st = os.lstat(nxt)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(nxt, 0o755)
                self.written.add("/".join(parts[: i + 1]))  # an opaque marker must keep it
                cur = nxt
                continue
            if stat.S_ISLNK(st.st_mode):
                raise ImageError(
                    f"{what}: member {name!r} is reached through the symlink "
                    f"{'/'.join(parts[: i + 1])!r} -> {os.readlink(nxt)!r} made by an earlier member"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise ImageError(
                    f"{what}: member {name!r} is reached through {'/'.join(parts[: i + 1])!r}, "
                    "which is not a directory"
                )
            if create:
                self.written.add("/".join(parts[: i + 1]))
            cur = nxt
        return cur

    def member(self, lt: tarfile.TarFile, m: tarfile.TarInfo, what: str) -> None:
        parts = _parts(m.name, what)
        if not parts:
            return  # the root itself
        rel = "/".join(parts)
        base = parts[-1]
        if base.startswith(_WHITEOUT):
            self.whiteout(parts, m.name, what)
            return
        if not (m.isdir() or m.isreg() or m.issym() or m.islnk()):
            self.skipped.append(rel)  # devices, fifos: a container gets its own /dev
            return
        # A hard link's target is checked before anything is created for it.
        target = self.link_target(m, what) if m.islnk() else None
        path = os.path.join(self.parent(parts, m.name, what, create=True), base)
        if m.isdir():
            if not os.path.isdir(path) or os.path.islink(path):
                _clear(path)
                os.mkdir(path, 0o755)
            # setuid/setgid dropped, sticky kept (a /tmp needs it); applied once everything is in.
            self.dirs[path] = (m.mode & 0o1777, int(m.mtime))
        elif target != path:  # (a hard link to itself is already there)
            _clear(path)  # replace, never write through: the old entry may be a symlink or a link
            if m.isreg():
                fd = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
                )
                with os.fdopen(fd, "wb") as out:
                    src = lt.extractfile(m)
                    if src is not None:
                        shutil.copyfileobj(src, out, _CHUNK)
                    os.fchmod(out.fileno(), m.mode & 0o777)
            elif m.issym():
                os.symlink(m.linkname, path)
            else:
                os.link(target, path, follow_symlinks=False)
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        self.written.add(rel)

    def link_target(self, m: tarfile.TarInfo, what: str) -> str:
        if m.linkname.startswith("/"):
            raise ImageError(
                f"{what}: hard link {m.name!r} points to {m.linkname!r}, outside the root"
            )
        try:
            parts = _parts(m.linkname, what)
        except ImageError:
            raise ImageError(
                f"{what}: hard link {m.name!r} points to {m.linkname!r}, outside the root"
            ) from None
        parent = self.parent(parts, m.linkname, what, create=False) if parts else None
        target = os.path.join(parent, parts[-1]) if parent is not None else None
        if target is None or not os.path.lexists(target):
            raise ImageError(
                f"{what}: hard link {m.name!r} points to {m.linkname!r}, which is not in the image"
            )
        if os.path.isdir(target) and not os.path.islink(target):
            raise ImageError(f"{what}: hard link {m.name!r} points to the directory {m.linkname!r}")
        return target

    def whiteout(self, parts: list[str], name: str, what: str) -> None:
        parent = self.parent(parts, name, what, create=False)
        if parent is None:
            return  # nothing below to hide
        rel_dir = "/".join(parts[:-1])
        if parts[-1] == _OPAQUE:
            self.prune(parent, rel_dir)
            return
        victim = parts[-1][len(_WHITEOUT) :]
        if victim in ("", ".", ".."):
            raise ImageError(f"{what}: malformed whiteout {name!r}")
        rel = f"{rel_dir}/{victim}" if rel_dir else victim
        if rel not in self.written:
            _clear(os.path.join(parent, victim))

    def prune(self, dirpath: str, rel_dir: str) -> None:
        """An opaque directory: remove what lower layers put there, keep what this layer did."""
        for name in os.listdir(dirpath):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            p = os.path.join(dirpath, name)
            if rel not in self.written:
                _clear(p)
            elif os.path.isdir(p) and not os.path.islink(p):
                self.prune(p, rel)

    def finish(self) -> None:
        # Deepest first: a parent made read-only must not stop its children's chmod.
        for path in sorted(self.dirs, key=lambda p: p.count("/"), reverse=True):
            mode, mtime = self.dirs[path]
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime))
        os.chmod(self.root, 0o755)


def _clear(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _rmtree(path)
    else:
        os.unlink(path)


def _rmtree(top: str) -> None:
    """rmtree that also removes directories an image made read-only."""

    def onerror(func, p, exc_info):
        if p == top or not os.path.lexists(p):
            raise exc_info[1]
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
            shutil.rmtree(p, onerror=onerror)
        else:
            os.unlink(p)

    shutil.rmtree(top, onerror=onerror)


def unpack_image(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str], image_sha256: str
) -> str:
    """Unpack an image's layers into ``cache_dir/<image_sha256>/rootfs`` once; return that path.

    ``image_sha256`` must be the verified sha256 of the image file (it names
    the cache entry and is trusted). If the entry is complete the call returns
    at once without opening the image; otherwise the layers are verified while
    they are unpacked into a temporary sibling, which is renamed into place
    with its marker. Concurrent unpackers each build their own copy and the
    first rename wins. Raises ImageError for a bad image (nothing is left in
    the cache) and ValueError for a malformed ``image_sha256``.
    """
    if not isinstance(image_sha256, str) or not _SHA256.fullmatch(image_sha256):
        raise ValueError(f"image_sha256 must be 64 lowercase hex digits, found {image_sha256!r}")
    cache_dir = os.path.abspath(cache_dir)
    final = os.path.join(cache_dir, image_sha256)
    rootfs = os.path.join(final, "rootfs")
    if os.path.exists(os.path.join(final, MARKER)):
        return rootfs
    path = os.fspath(path)
    t0 = time.perf_counter()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{image_sha256[:16]}.", suffix=".unpacking", dir=cache_dir)
    try:
        root = os.path.join(tmp, "rootfs")
        os.mkdir(root, 0o755)
        unpacker = _Unpacker(root)
        with _open_image(path) as tf:
            members = _members(tf)
            info = _inspect(tf, members, path)
            for i in range(len(info.layers)):
                _read_layer(tf, members, info, i, path, unpacker)
        unpacker.finish()
        marker = {
            "version": MARKER_VERSION,
            "image_sha256": image_sha256,
            "info": asdict(info),
            "skipped": unpacker.skipped,
            "seconds": round(time.perf_counter() - t0, 6),
            "unpacked_at": time.time(),
        }
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=1)
        os.chmod(tmp, 0o755)  # mkdtemp made it 0700: other users of a shared cache must read it
        try:
            os.rename(tmp, final)
            tmp = None
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise
            if not os.path.exists(os.path.join(final, MARKER)):
                raise ImageError(
                    f"{final} exists but holds no {MARKER}: not an unpacked image; remove it"
                ) from None
            # Another unpacker finished first; its copy is as good as ours.
    finally:
        if tmp is not None:
            _rmtree(tmp)
    return rootfs


def unpacked_info(rootfs: str | os.PathLike[str]) -> ImageInfo:
    """The ImageInfo recorded when ``rootfs`` was unpacked, without opening the image again."""
    with open(os.path.join(os.path.dirname(os.fspath(rootfs)), MARKER), encoding="utf-8") as f:
        info = json.load(f)["info"]
    return ImageInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in info.items()})
