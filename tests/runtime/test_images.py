"""Image archives as data: inspecting, verifying and unpacking real tars built in tmp_path."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import stat
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from runtime import images
from runtime.images import ImageError, inspect_image, unpack_image, unpacked_info


def _imagebuild():
    if "imagebuild" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "imagebuild", Path(__file__).with_name("imagebuild.py")
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["imagebuild"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["imagebuild"]


ib = _imagebuild()
BUILDERS = {
    "docker-legacy": lambda p, *a, **k: ib.build_docker_archive(p, *a, layout="legacy", **k),
    "docker-blobs": lambda p, *a, **k: ib.build_docker_archive(p, *a, layout="blobs", **k),
    "docker-gzip": lambda p, *a, **k: ib.build_docker_archive(p, *a, compress=True, **k),
    "oci-gzip": lambda p, *a, **k: ib.build_oci_archive(p, *a, **k),
    "oci-plain": lambda p, *a, **k: ib.build_oci_archive(p, *a, compress=False, **k),
}


@pytest.fixture(params=sorted(BUILDERS))
def build(request):
    return BUILDERS[request.param]


def leftovers(cache: Path) -> list[str]:
    """What a failed unpack left in the cache: must be nothing."""
    return sorted(os.listdir(cache)) if cache.exists() else []


# ---------------------------------------------------------------- inspect


def test_inspect_reads_format_digests_and_config(tmp_path, build):
    built = build(
        tmp_path / "img.tar",
        {"data/x.txt": b"x\n"},
        env=("PATH=/bin", "LANG=C.UTF-8"),
        workdir="/data",
        cmd=("/bin/sh", "-c", "echo hi"),
        entrypoint=("/bin/env",),
    )
    info = inspect_image(built.path)
    assert info.format == built.format
    assert info.manifest_digest == built.manifest_digest
    assert info.config_digest == built.config_digest
    assert info.layers == built.layers
    assert info.diff_ids == built.diff_ids
    if info.layer_digests[0] is not None:  # docker's legacy layout declares no blob digests
        assert info.layer_digests == built.layer_digests
    assert info.env == ("PATH=/bin", "LANG=C.UTF-8")
    assert info.working_dir == "/data"
    assert info.cmd == ("/bin/sh", "-c", "echo hi")
    assert info.entrypoint == ("/bin/env",)
    assert info.tags


def test_docker_manifest_digest_is_of_manifest_json(tmp_path):
    built = ib.build_docker_archive(tmp_path / "img.tar")
    with tarfile.open(built.path) as tf:
        raw = tf.extractfile("manifest.json").read()
    assert inspect_image(built.path).manifest_digest == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_builder_is_deterministic(tmp_path):
    a = ib.build_oci_archive(tmp_path / "a.tar", {"x": b"1"})
    b = ib.build_oci_archive(tmp_path / "b.tar", {"x": b"1"})
    assert a.sha256 == b.sha256
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_singularity_image_is_refused(tmp_path):
    sif = tmp_path / "tool.sif"
    sif.write_bytes(
        b"#!/usr/bin/env run-singularity\n".ljust(32, b"\0") + b"SIF_MAGIC\0" + b"\0" * 64
    )
    with pytest.raises(ImageError, match="singularity images cannot run locally: no apptainer/singularity runtime on this machine"):  # fmt: skip
        inspect_image(sif)
    renamed = tmp_path / "tool.img"
    renamed.write_bytes(sif.read_bytes())
    with pytest.raises(ImageError, match="singularity images cannot run locally"):
        inspect_image(renamed)


def test_not_a_tar_and_not_an_image(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ImageError, match="not a tar file"):
        inspect_image(junk)
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tf:
        tf.add(junk, "data/junk.bin")
    with pytest.raises(ImageError, match="found neither manifest.json .* nor oci-layout"):
        inspect_image(plain)


def _without(src: Path, dst: Path, member: str) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            if m.name != member:
                tout.addfile(m, tin.extractfile(m) if m.isfile() else None)


def test_missing_layer_blob(tmp_path, build):
    built = build(tmp_path / "img.tar")
    broken = tmp_path / "broken.tar"
    _without(Path(built.path), broken, built.layers[0])
    with pytest.raises(ImageError, match=f"missing blob '{built.layers[0]}'"):
        inspect_image(broken)


def test_missing_config_blob(tmp_path):
    built = ib.build_oci_archive(tmp_path / "img.tar")
    broken = tmp_path / "broken.tar"
    _without(Path(built.path), broken, f"blobs/sha256/{built.config_digest[7:]}")
    with pytest.raises(ImageError, match=r"missing blob .*\(config\)"):
        inspect_image(broken)


def test_tampered_layer_names_the_digest(tmp_path, build):
    built = build(tmp_path / "img.tar")
    ib.tamper(built.path, built.layers[0])
    # The blob's own digest where the archive declares one, else the uncompressed diff_id.
    declared = inspect_image(built.path, verify_layers=False).layer_digests[0]
    with pytest.raises(ImageError, match="sha256 mismatch") as e:
        inspect_image(built.path)
    print(e.value)
    assert built.layers[0] in str(e.value)
    assert f"expected {declared or built.diff_ids[0]}, found sha256:" in str(e.value)
    if declared:
        with tarfile.open(built.path) as tf:
            actual = hashlib.sha256(tf.extractfile(built.layers[0]).read()).hexdigest()
        assert str(e.value).endswith(f"found sha256:{actual}")


def test_tampered_layer_is_not_unpacked(tmp_path, build):
    built = build(tmp_path / "img.tar")
    ib.tamper(built.path, built.layers[0])
    cache = tmp_path / "cache"
    with pytest.raises(ImageError, match="sha256 mismatch: expected sha256:"):
        unpack_image(built.path, cache, built.sha256)
    assert leftovers(cache) == []


def test_tampered_config_and_manifest(tmp_path):
    built = ib.build_oci_archive(tmp_path / "img.tar")
    ib.tamper(built.path, f"blobs/sha256/{built.config_digest[7:]}", at=0)
    with pytest.raises(ImageError, match=f"config .*{built.config_digest}"):
        inspect_image(built.path, verify_layers=False)
    built = ib.build_oci_archive(tmp_path / "img2.tar")
    ib.tamper(built.path, f"blobs/sha256/{built.manifest_digest[7:]}", at=3)
    with pytest.raises(ImageError, match=f"manifest .*expected {built.manifest_digest}"):
        inspect_image(built.path)
    built = ib.build_docker_archive(tmp_path / "img3.tar")
    ib.tamper(built.path, f"{built.config_digest[7:]}.json", at=3)
    with pytest.raises(ImageError, match=f"expected {built.config_digest}"):
        inspect_image(built.path)


def _rewrite(src: str, dst: Path, replace: dict[str, bytes]) -> None:
    """Copy an archive, replacing or adding members."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            if m.name in replace:
                continue
            tout.addfile(m, tin.extractfile(m) if m.isfile() else None)
        for name, data in replace.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tout.addfile(ti, io.BytesIO(data))


def test_multi_platform_index_picks_this_machine(tmp_path):
    import json
    import platform

    built = ib.build_oci_archive(tmp_path / "img.tar")
    with tarfile.open(built.path) as tf:
        size = tf.getmember(f"blobs/sha256/{built.manifest_digest[7:]}").size
    arch = images._ARCH.get(platform.machine(), platform.machine())
    other = "s390x" if arch != "s390x" else "amd64"
    bogus = b'{"not": "used"}'
    mtype = "application/vnd.oci.image.manifest.v1+json"
    itype = "application/vnd.oci.image.index.v1+json"

    def desc(digest, n, **extra):
        return {"mediaType": mtype, "digest": digest, "size": n, **extra}

    nested = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": itype,
            "manifests": [
                desc(ib._sha(bogus), len(bogus), platform={"os": "linux", "architecture": other}),
                desc(built.manifest_digest, size, platform={"os": "linux", "architecture": arch}),
                desc(
                    ib._sha(bogus),
                    len(bogus),
                    platform={"os": "unknown", "architecture": "unknown"},
                    annotations={"vnd.docker.reference.type": "attestation-manifest"},
                ),
            ],
        }
    ).encode()
    top = {"schemaVersion": 2, "manifests": [
        {"mediaType": itype, "digest": ib._sha(nested), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}
    ]}  # fmt: skip
    multi = tmp_path / "multi.tar"
    _rewrite(
        built.path,
        multi,
        {
            f"blobs/sha256/{ib._sha(nested)[7:]}": nested,
            f"blobs/sha256/{ib._sha(bogus)[7:]}": bogus,
            "index.json": json.dumps(top).encode(),
        },
    )
    info = inspect_image(multi)
    assert info.manifest_digest == built.manifest_digest
    assert info.tags == ("multi",)
    assert info.layers == built.layers


def test_zstd_layer_is_refused_clearly(tmp_path):
    fake = b"\x28\xb5\x2f\xfd" + b"\0" * 100
    built = ib.build_oci_archive(tmp_path / "img.tar", base=False, layers=[fake])
    with pytest.raises(ImageError, match="zstd-compressed"):
        unpack_image(built.path, tmp_path / "cache", built.sha256)


def test_two_images_in_one_docker_archive(tmp_path):
    built = ib.build_docker_archive(tmp_path / "img.tar")
    twice = tmp_path / "twice.tar"
    with tarfile.open(built.path) as tin, tarfile.open(twice, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None
            if m.name == "manifest.json":
                data = data[:-1] + b"," + data[1:]
                m.size = len(data)
            tout.addfile(m, None if data is None else io.BytesIO(data))
    with pytest.raises(ImageError, match="lists 2 images; save one image per file"):
        inspect_image(twice)


# ---------------------------------------------------------------- unpack


def test_unpack_makes_the_root(tmp_path, build):
    built = build(
        tmp_path / "img.tar",
        {
            "usr/local/bin/tool": (b"#!/bin/sh\necho tool\n", 0o755),
            "usr/bin/su": (b"suid", 0o4755),
            "usr/bin/wall": (b"sgid", 0o2755),
            "etc/~hardlink": ("link", "etc/os-release"),  # sorts after its target
            "abs": ("symlink", "/bin/busybox"),
            "dev/null": ("chr", 1, 3),
            "run/fifo": ("fifo",),
        },
    )
    cache = tmp_path / "cache"
    rootfs = Path(unpack_image(built.path, cache, built.sha256))
    assert rootfs == cache / built.sha256 / "rootfs"
    assert (rootfs / "bin/busybox").read_bytes() == Path(ib.BUSYBOX).read_bytes()
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert os.readlink(rootfs / "abs") == "/bin/busybox"  # stored as is, never followed
    assert (rootfs / "etc/os-release").read_bytes() == ib.OS_RELEASE
    assert (rootfs / "etc/~hardlink").stat().st_ino == (rootfs / "etc/os-release").stat().st_ino
    assert stat.S_IMODE((rootfs / "usr/local/bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "usr/bin/su").stat().st_mode) == 0o755  # setuid dropped
    assert stat.S_IMODE((rootfs / "usr/bin/wall").stat().st_mode) == 0o755  # setgid dropped
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert not (rootfs / "dev/null").exists() and not (rootfs / "run/fifo").exists()
    assert (rootfs / "bin/busybox").stat().st_mtime == ib.MTIME
    info = unpacked_info(rootfs)
    assert info == inspect_image(built.path)
    assert os.listdir(cache) == [built.sha256]


def test_whiteouts(tmp_path, build):
    lower = {
        "etc/motd": b"hello\n",
        "etc/keep": b"keep\n",
        "opt/app/old.txt": b"old\n",
        "opt/app/sub/deep.txt": b"deep\n",
        "opt/other/x": b"x\n",
        "var/gone/file": b"f\n",
    }
    upper = {
        "etc/.wh.motd": b"",
        "opt/app/.wh..wh..opq": b"",
        "opt/app/new.txt": b"new\n",
        "var/.wh.gone": b"",
    }
    built = build(tmp_path / "img.tar", lower, layers=[upper])
    rootfs = Path(unpack_image(built.path, tmp_path / "cache", built.sha256))
    assert not (rootfs / "etc/motd").exists()
    assert (rootfs / "etc/keep").read_text() == "keep\n"
    assert sorted(os.listdir(rootfs / "opt/app")) == ["new.txt"]
    assert (rootfs / "opt/other/x").exists()
    assert not (rootfs / "var/gone").exists()
    assert not list(rootfs.rglob(".wh.*"))


def test_opaque_keeps_what_the_same_layer_wrote_first(tmp_path):
    lower = {"opt/app/old.txt": b"old\n", "opt/app/sub/old.txt": b"old\n"}
    upper = {  # unsorted: the marker comes after this layer's own entries
        "opt/app/sub/new.txt": b"new\n",
        "opt/app/new.txt": b"new\n",
        "opt/app/.wh..wh..opq": b"",
    }
    built = ib.build_oci_archive(tmp_path / "img.tar", lower, layers=[upper], sort=False)
    rootfs = Path(unpack_image(built.path, tmp_path / "cache", built.sha256))
    assert sorted(p.relative_to(rootfs / "opt").as_posix() for p in (rootfs / "opt").rglob("*")) == [
        "app", "app/new.txt", "app/sub", "app/sub/new.txt",
    ]  # fmt: skip


def test_upper_layer_replaces_kinds(tmp_path):
    lower = {"a": b"file\n", "b": ("dir", 0o755), "b/x": b"x", "c": ("symlink", "/etc")}
    upper = {"a": ("dir", 0o755), "b": b"now a file\n", "c": b"now a file\n"}
    built = ib.build_oci_archive(tmp_path / "img.tar", lower, layers=[upper], base=False)
    rootfs = Path(unpack_image(built.path, tmp_path / "cache", built.sha256))
    assert (rootfs / "a").is_dir()
    assert (rootfs / "b").read_text() == "now a file\n"
    assert not (rootfs / "c").is_symlink() and (rootfs / "c").read_text() == "now a file\n"


# "{out}" is a directory beside the cache that must stay untouched. Destructive
# cases (whiteouts) aim only at it; harmless writes aim at the real /etc too.
HOSTILE = {
    "dotdot": ({"../evil": b"evil"}, "climbs out of the root with '..'"),
    "deep-dotdot": ({"a/../../../../../evil": b"evil"}, "climbs out"),
    "absolute-etc": ({"/etc/wf-evil-test": b"evil"}, "is an absolute path"),
    "absolute-out": ({"{out}/evil": b"evil"}, "is an absolute path"),
    "symlink-parent-etc": (
        {"x": ("symlink", "/etc"), "x/wf-evil-test": b"evil"},
        r"'x/wf-evil-test' is reached through the symlink 'x' -> '/etc'",
    ),
    "symlink-parent-out": (
        {"x": ("symlink", "{out}"), "x/evil": b"evil"},
        "reached through the symlink 'x'",
    ),
    "symlink-parent-rel": (
        {"x": ("symlink", "../../../../.."), "x/evil": b"evil"},
        "reached through the symlink 'x'",
    ),
    "symlink-grandparent": (
        {"d": ("dir", 0o755), "d/x": ("symlink", "{out}"), "d/x/y/evil": b"evil"},
        "reached through the symlink 'd/x'",
    ),
    "hardlink-etc": (
        {"pw": ("link", "/etc/passwd")},
        "hard link 'pw' points to '/etc/passwd', outside the root",
    ),
    "hardlink-dotdot": ({"pw": ("link", "../../../../../etc/passwd")}, "outside the root"),
    "hardlink-through-symlink": (
        {"x": ("symlink", "{out}"), "pw": ("link", "x/victim")},
        "reached through the symlink 'x'",
    ),
    "hardlink-missing": ({"pw": ("link", "nowhere")}, "which is not in the image"),
    "whiteout-through-symlink": (
        {"x": ("symlink", "{out}"), "x/.wh.victim": b""},
        "reached through the symlink",
    ),
    "opaque-through-symlink": (
        {"x": ("symlink", "{out}"), "x/.wh..wh..opq": b""},
        "reached through the symlink",
    ),
}


def _fill(files: dict, out: Path) -> dict:
    def f(v):
        return v.replace("{out}", str(out)) if isinstance(v, str) else v

    return {f(k): tuple(f(x) for x in v) if isinstance(v, tuple) else v for k, v in files.items()}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused(tmp_path, case):
    files, message = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("intact\n")
    built = ib.build_oci_archive(
        tmp_path / "img.tar", _fill(files, outside), base=False, sort=False
    )
    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(ImageError, match=message):
        unpack_image(built.path, cache, built.sha256)
    assert leftovers(cache) == []
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "intact\n"
    assert sorted(os.listdir(tmp_path)) == ["a", "img.tar", "outside"]
    assert sorted(os.listdir(tmp_path / "a")) == ["b"]
    assert not Path("/etc/wf-evil-test").exists()
    assert not Path("/evil").exists() and not Path("/tmp/evil").exists()


def test_hostile_symlink_target_outside_via_absolute_member(tmp_path):
    files = {"x": ("symlink", "/etc"), "/etc/passwd": b"evil"}
    built = ib.build_oci_archive(tmp_path / "img.tar", files, base=False, sort=False)
    with pytest.raises(ImageError, match="absolute path"):
        unpack_image(built.path, tmp_path / "cache", built.sha256)


def test_later_member_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("intact\n")
    files = {"etc/x": b"inside\n", "v": ("symlink", str(outside / "victim"))}
    upper = {"v": b"replaced\n", "etc/y": ("link", "etc/x"), "etc/x": b"new\n"}
    built = ib.build_oci_archive(
        tmp_path / "img.tar", files, layers=[upper], base=False, sort=False
    )
    rootfs = Path(unpack_image(built.path, tmp_path / "cache", built.sha256))
    assert (outside / "victim").read_text() == "intact\n"
    assert not (rootfs / "v").is_symlink() and (rootfs / "v").read_text() == "replaced\n"
    assert (
        rootfs / "etc/y"
    ).read_text() == "inside\n"  # the link kept the old file; x was replaced
    assert (rootfs / "etc/x").read_text() == "new\n"


def test_unpack_happens_once(tmp_path, monkeypatch):
    built = ib.build_oci_archive(tmp_path / "img.tar")
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    first = unpack_image(built.path, cache, built.sha256)
    t_first = time.perf_counter() - t0
    # The second call must not open the image at all: make any attempt fail loudly.
    os.unlink(built.path)
    monkeypatch.setattr(images.tarfile, "open", lambda *a, **k: pytest.fail("reopened the image"))
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        again = unpack_image(built.path, cache, built.sha256)
        times.append(time.perf_counter() - t0)
    print(f"\nunpack: first {t_first * 1e3:.1f} ms, again best {min(times) * 1e6:.0f} us, worst {max(times) * 1e6:.0f} us")  # fmt: skip
    assert again == first
    assert max(times) < 0.010


def test_concurrent_unpackers_agree(tmp_path):
    built = ib.build_oci_archive(tmp_path / "img.tar")
    cache = tmp_path / "cache"
    results, errors = [], []
    start = threading.Barrier(4)

    def work():
        start.wait()
        try:
            results.append(unpack_image(built.path, cache, built.sha256))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert os.listdir(cache) == [built.sha256]  # the losers cleaned up after themselves
    assert (Path(results[0]) / "bin/busybox").exists()


def test_crashed_unpack_leaves_no_final_name(tmp_path, monkeypatch):
    built = ib.build_oci_archive(tmp_path / "img.tar")
    cache = tmp_path / "cache"

    def crash(self):
        raise KeyboardInterrupt  # as if killed halfway: after the layers, before the marker

    monkeypatch.setattr(images._Unpacker, "finish", crash)
    with pytest.raises(KeyboardInterrupt):
        unpack_image(built.path, cache, built.sha256)
    assert not (cache / built.sha256).exists()
    monkeypatch.undo()
    # A stale temporary directory from a harder crash (SIGKILL) is simply ignored.
    (cache / f".{built.sha256[:16]}.stale.unpacking" / "rootfs").mkdir(parents=True)
    rootfs = unpack_image(built.path, cache, built.sha256)
    assert Path(rootfs, "bin/busybox").exists()


def test_foreign_directory_under_the_final_name(tmp_path):
    built = ib.build_oci_archive(tmp_path / "img.tar")
    cache = tmp_path / "cache"
    (cache / built.sha256 / "rootfs").mkdir(parents=True)
    with pytest.raises(ImageError, match="holds no unpacked.json"):
        unpack_image(built.path, cache, built.sha256)
    assert sorted(os.listdir(cache)) == [built.sha256]


@pytest.mark.parametrize("bad", ["../x", "ABC", "0" * 63, "/" + "0" * 63])
def test_image_sha256_must_be_hex(tmp_path, bad):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        unpack_image(tmp_path / "img.tar", tmp_path / "cache", bad)


def test_read_only_dirs_in_a_bad_image_are_cleaned_up(tmp_path):
    # A directory made read-only by the image, then a tampered later layer: the
    # half-built root (with its read-only directory) must still be removed.
    built = ib.build_oci_archive(
        tmp_path / "img.tar", {"ro": ("dir", 0o555), "ro/f": b"f"}, layers=[{"x": b"x" * 5000}]
    )
    ib.tamper(built.path, built.layers[1])
    cache = tmp_path / "cache"
    with pytest.raises(ImageError, match="sha256 mismatch"):
        unpack_image(built.path, cache, built.sha256)
    assert leftovers(cache) == []


def test_script_writes_an_image(tmp_path):
    import subprocess

    extra = tmp_path / "hello.sh"
    extra.write_text("#!/bin/sh\necho hello\n")
    extra.chmod(0o755)
    out = tmp_path / "x.tar"
    proc = subprocess.run(
        [sys.executable, str(Path(ib.__file__)), "--format", "oci", "--add", f"/usr/bin/hello={extra}", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert proc.stdout.split() == [sha, str(out)]
    rootfs = Path(unpack_image(out, tmp_path / "cache", sha))
    assert stat.S_IMODE((rootfs / "usr/bin/hello").stat().st_mode) == 0o755
