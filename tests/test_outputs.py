"""Output safety: refused outputs before any work, atomic writes, no temporaries left."""

import errno
import os
import signal
import stat
import subprocess
import sys

import pytest

from hnet_dna.errors import InputError, OutputError
from hnet_dna.genomics.intervals import BedFormatError
from hnet_dna.outputs import atomic_output, check_output, check_outputs


def test_refuses_output_that_is_an_input(tmp_path):
    src = tmp_path / "calls.vcf.gz"
    src.write_bytes(b"data")
    with pytest.raises(OutputError, match="is the input file"):
        check_output(src, inputs=[src], overwrite=True)
    # the same file through a symlink and through a relative path with ..
    link = tmp_path / "link.vcf.gz"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="is the input file"):
        check_output(link, inputs=[src], overwrite=True)
    with pytest.raises(OutputError, match="is the input file"):
        check_output(tmp_path / "sub" / ".." / "calls.vcf.gz", inputs=[src], overwrite=True)
    assert src.read_bytes() == b"data"


def test_refuses_existing_file_without_overwrite(tmp_path):
    out = tmp_path / "emb.parquet"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        check_output(out)
    assert check_output(out, overwrite=True) == out


def test_refuses_directory_and_unwritable_folder(tmp_path, monkeypatch):
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    # CI runs as root, which ignores folder modes: ask os.access as an ordinary user would.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if p == locked else real_access(p, m))
    with pytest.raises(OutputError, match="not writable"):
        check_output(locked / "out.bed")


def test_missing_parents_are_created_and_file_parent_refused(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "out.bed").parent.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the folder"):
        check_output(blocker / "out.bed")


def test_free_space_estimate(tmp_path):
    with pytest.raises(OutputError, match="not enough free space"):
        check_output(tmp_path / "big.npy", min_free_bytes=1 << 62)


def test_check_outputs_refuses_duplicates(tmp_path):
    with pytest.raises(OutputError, match="named twice"):
        check_outputs([tmp_path / "a.bed", tmp_path / "x" / ".." / "a.bed"])


def test_atomic_output_renames_on_success_with_umask_permissions(tmp_path):
    out = tmp_path / "scored.vcf.gz"
    out.write_bytes(b"previous")
    with atomic_output(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".vcf.gz") and tmp != out
        tmp.write_bytes(b"new contents")
        assert out.read_bytes() == b"previous"  # untouched until success
    assert out.read_bytes() == b"new contents"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored.vcf.gz"]


def test_atomic_output_failure_leaves_nothing(tmp_path):
    out = tmp_path / "table.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_disk_full_names_the_path(tmp_path):
    out = tmp_path / "per_base.npy"
    with pytest.raises(OSError, match=f"disk full while writing {out}") as info:
        with atomic_output(out):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_format_errors_are_input_errors():
    assert issubclass(BedFormatError, InputError) and issubclass(InputError, ValueError)


def test_atomic_output_disk_full_reported_by_a_rust_writer(tmp_path):
    # polars' parquet writer reports ENOSPC as ComputeError("... (os error 28)"), not OSError
    import polars as pl

    out = tmp_path / "table.parquet"
    with pytest.raises(OSError, match=f"disk full while writing {out}$") as info:
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"PAR1 half")
            raise pl.exceptions.ComputeError(
                "parquet: File out of specification: underlying IO error: No space left on "
                "device (os error 28)")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_sigterm_inside_atomic_output_removes_the_temporary(tmp_path):
    # in a child process: without the handler, SIGTERM would end the test run itself
    out = tmp_path / "track.bedGraph"
    code = f"""
import os, signal, sys
from hnet_dna.outputs import atomic_output
before = signal.getsignal(signal.SIGTERM)
try:
    with atomic_output({str(out)!r}) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes of this thread
            pass
except SystemExit as err:
    assert signal.getsignal(signal.SIGTERM) == before, "handler not restored"
    sys.exit(err.code)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(tmp_path.iterdir()) == []
