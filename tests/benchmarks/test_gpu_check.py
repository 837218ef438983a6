"""benchmarks/gpu_check.py (and its device set-up, gpu_kernels.py) on the CPU: GPU rows skipped
with their reason, the CPU-capable code at tiny shapes (--smoke), guarded sections, results
flushed after each section."""

from __future__ import annotations

import json
import math
import os
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check, gpu_kernels
from hnet_dna.model import attention
from hnet_dna.model.ops import kernels_disabled

GPU_SECTIONS = ("parity", "throughput", "generation", "data_efficiency")


def _read(out: Path) -> tuple[dict, str]:
    payload = json.loads((out / "gpu_check.json").read_text())
    return payload, (out / "gpu_check.md").read_text()


def test_cpu_run_skips_every_gpu_section_with_its_reason(tmp_path):
    gpu_check.main(["--out", str(tmp_path), "--device", "cpu"])
    payload, md = _read(tmp_path)
    assert list(payload["sections"]) == ["environment", *GPU_SECTIONS]
    for name in GPU_SECTIONS:
        assert payload["sections"][name]["skipped"].startswith(gpu_check.NO_CUDA)
        assert f"## {name}\n\nskipped: {gpu_check.NO_CUDA}" in md
    env = payload["sections"]["environment"]
    assert env["device"] == "cpu"
    assert set(env["fast_paths"]) == {"ssd_triton", "mamba2_fused", "flash_attn",
                                      "selective_state_update"}
    assert "No GPU on `cpu`" in md


def test_each_section_module_is_registered_with_its_time_share():
    """A section is a module of benchmarks/gpu/ (run, NEEDS_S, summary) listed in
    gpu_check.SECTION_MODULES, with its share in Plan.shares; one left out would never run."""
    folder = Path(gpu_check.__file__).parent / "gpu"
    sections = {p.stem for p in folder.glob("*.py")} - {"__init__", "context", "results"}
    assert [name for name, _, _ in gpu_check.SECTIONS] == ["environment", *GPU_SECTIONS]
    assert set(GPU_SECTIONS) | {"environment"} == sections
    assert list(gpu_check.SUMMARIES) == list(GPU_SECTIONS)
    assert set(gpu_check.Plan.make(False).shares) == set(GPU_SECTIONS)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("smoke")
    gpu_check.main(["--smoke", "--out", str(out), "--device", "cpu", "--budget", "600"])
    return _read(out)


def test_smoke_parity_rows_compare_torch_path_with_float64(smoke):
    payload, md = smoke
    rows = payload["sections"]["parity"]["rows"]
    names = {key.rsplit("/", 1)[0].split(" ")[0] for key in rows}
    assert names == {"ssd_scan", "ssd_scan_packed", "ema_scan", "ema_scan_packed", "mamba2",
                     "mamba2_packed", "attention_w1023", "attention_w-1",
                     "attention_w1023_packed"}
    assert len(rows) == 2 * len(names)
    for key, row in rows.items():
        assert "error" not in row, (key, row)
        assert row["fast"].startswith("skipped: "), row["fast"]
        worst = max(e["rel_l2"] for e in row["torch_vs_f64"].values())
        # fp32 rounding only; bf16 inputs are rounded before the oracle sees them, so what is
        # left is bf16 autocast inside the modules (none for the scans: they compute in fp32).
        assert worst < (1e-5 if row["precision"] == "fp32" else gpu_check.TOLERANCE["bf16"])
        assert {"out", "dx"} <= set(row["torch_vs_f64"])  # outputs and gradients
    assert "flash-attn takes fp16/bf16 only" in md


def test_smoke_throughput_matches_flops_and_calibrates_routing(smoke):
    payload, _ = smoke
    rows = payload["sections"]["throughput"]["rows"]
    hnets = [r for r in rows if r["model"].startswith("hnet")]
    baselines = [r for r in rows if r["model"] in ("transformer", "mamba2")]
    assert len(hnets) == 2 and len(baselines) == 4
    for r in rows:
        assert "error" not in r, r
        assert r["bases_per_s"] > 0 and r["seconds"] > 0
    for r in hnets:
        assert all(2.0 < c < 4.5 for c in r["compression"])  # calibrated towards N = 3
    for r in baselines:
        hnet = next(h for h in hnets if h["model"] == r["matched_to"])
        assert r["flop_gap"] == pytest.approx(
            abs(r["train_flops_per_base"] - hnet["train_flops_per_base"])
            / hnet["train_flops_per_base"], abs=0.1)
        assert r["hnet_over_this"] == pytest.approx(hnet["bases_per_s"] / r["bases_per_s"])


def test_smoke_generation_and_data_efficiency(smoke):
    payload, md = smoke
    gen = payload["sections"]["generation"]["rows"]
    assert set(gen) == {"hnet_1stage", "hnet_2stage", "mamba2", "transformer_swa",
                        "transformer"}
    for row in gen.values():
        assert all(row[str(c)] > 0 for c in payload["sections"]["generation"]["contexts"])
    de = payload["sections"]["data_efficiency"]
    assert set(de["runs"]) == {"hnet", "transformer", "mamba2"}
    assert de["bases_per_model"] == de["steps"] * de["batch"] * de["context"]
    for run in de["runs"].values():
        steps = [c["step"] for c in run["curve"]]
        assert steps[-1] == de["steps"] and steps == sorted(set(steps))  # equal bases for all
        assert all(0 < c["bpb"] < 8 for c in run["curve"])
        assert [c["train_bases"] for c in run["curve"]] == [
            s * de["batch"] * de["context"] for s in steps]
        # every model is scored on the same held-out bases
        assert {c["bases"] for c in run["curve"]} == {
            de["runs"]["hnet"]["curve"][0]["bases"]}
        assert math.isfinite(run["final_train_loss"])
    assert de["runs"]["hnet"]["layout"] == ["m2t1", ["T5"], "m2"]
    assert "Smoke run (tiny shapes)" in md and "error:" not in md


def test_failing_section_is_recorded_and_results_are_flushed_before_the_next(tmp_path,
                                                                            monkeypatch):
    def boom(ctx):
        raise RuntimeError("boom")

    def check_flushed(ctx):
        payload = json.loads((tmp_path / "gpu_check.json").read_text())
        assert payload["sections"]["parity"]["error"] == "RuntimeError: boom"
        raise gpu_check.Skip("saw the flushed error")

    monkeypatch.setattr(gpu_check, "SECTIONS", [("environment", lambda ctx: {}, 0.0),
                                                ("parity", boom, 0.0),
                                                ("throughput", check_flushed, 0.0)])
    gpu_check.main(["--out", str(tmp_path), "--device", "cpu"])
    payload, md = _read(tmp_path)
    assert "boom" in payload["sections"]["parity"]["traceback"]
    assert payload["sections"]["throughput"]["skipped"] == "saw the flushed error"
    assert "error: RuntimeError: boom" in md and "## generation\n\nnot reached" in md


def test_sections_past_the_budget_are_skipped(tmp_path):
    gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--budget", "0"])
    payload, _ = _read(tmp_path)
    for name in GPU_SECTIONS:
        assert payload["sections"][name]["skipped"].startswith("deadline: ")


def test_errors_are_max_abs_max_rel_and_relative_l2():
    ref = torch.tensor([1.0, -4.0, 2.0, 0.0])
    e = gpu_check.errors(ref + torch.tensor([0.0, 0.5, 0.0, -0.25]), ref)
    assert e["max_abs"] == pytest.approx(0.5)
    assert e["max_rel"] == pytest.approx(0.5 / 4.0)
    assert e["rel_l2"] == pytest.approx(math.sqrt(0.25 + 0.0625) / math.sqrt(21.0))


def test_torch_paths_switches_kernels_off_and_restores(monkeypatch):
    monkeypatch.delenv("HNET_DNA_DISABLE_KERNELS", raising=False)
    sentinel = object()
    monkeypatch.setattr(attention, "flash_attn_func", sentinel)
    with gpu_kernels.torch_paths():
        assert kernels_disabled() and attention.flash_attn_func is None
    assert attention.flash_attn_func is sentinel
    assert "HNET_DNA_DISABLE_KERNELS" not in os.environ


def _fake_package(root: Path, name: str, missing: str) -> None:
    pkg = root / name
    (pkg / "ops").mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"import {missing}\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "kernel.py").write_text("VALUE = 42\n")


def test_import_submodule_skips_an_init_that_needs_a_missing_extension(tmp_path, monkeypatch):
    _fake_package(tmp_path, "fake_mamba_pkg", "fake_missing_cuda_ext")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        how = gpu_kernels.import_submodule("fake_mamba_pkg.ops.kernel")
        assert "without fake_mamba_pkg/__init__ (fake_missing_cuda_ext is absent)" in how
        assert sys.modules["fake_mamba_pkg.ops.kernel"].VALUE == 42
        # A package that is not there at all stays an error.
        with pytest.raises(ModuleNotFoundError):
            gpu_kernels.import_submodule("no_such_pkg_here.ops")
    finally:
        for name in [m for m in sys.modules if m.startswith("fake_mamba_pkg")]:
            del sys.modules[name]


def test_setup_carry_installs_sources_and_reports_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_kernels, "WORK", tmp_path / "work")
    cpu = torch.device("cpu")
    info, build = gpu_kernels.setup_carry(tmp_path / "absent", cpu)
    assert "no such folder" in info["error"] and build is None
    carry, src = tmp_path / "carry", tmp_path / "fake_carry_pkg-1.0"
    carry.mkdir()
    (src / "fake_carry_pkg").mkdir(parents=True)
    (src / "fake_carry_pkg" / "__init__.py").write_text("VALUE = 7\n")
    with tarfile.open(carry / "fake_carry_pkg-1.0.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=src.name)
    old_path = list(sys.path)
    try:
        info, build = gpu_kernels.setup_carry(carry, cpu)
        assert info["sources"] == ["fake_carry_pkg-1.0.tar.gz"] and build is None  # no CUDA
        import fake_carry_pkg

        assert fake_carry_pkg.VALUE == 7
    finally:
        sys.path[:] = old_path
        sys.modules.pop("fake_carry_pkg", None)


def test_conv_build_command_targets_one_architecture(tmp_path):
    cmd = gpu_kernels.conv_build_command(tmp_path / "src", tmp_path / "build", "90")
    code = cmd[-1]
    assert cmd[0] == sys.executable and "name='causal_conv1d_cuda'" in code
    assert "arch=compute_90,code=sm_90" in code and code.count("-gencode") == 1
    compile(code, "<build>", "exec")  # a valid python program


def test_compare_judges_a_fast_path_by_its_calls_and_its_error(monkeypatch):
    """The parity plumbing with a stand-in fast path (the CPU has no real one): a kernel that
    is called and close enough passes, one off by 1% fails fp32, one never called is 'not
    taken'; the torch path and the oracle run with the kernels switched off."""
    from hnet_dna.model.ops import ssd

    ctx = gpu_check.Context(gpu_check.Plan.make(True), torch.device("cpu"), deadline=math.inf)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))

    def run(scale: float, call: bool) -> dict:
        monkeypatch.setattr(ssd, "load_chunk_scan_kernel", lambda: (lambda t: t * scale))

        def fn(x: torch.Tensor) -> torch.Tensor:
            if call and not kernels_disabled():
                return ssd.load_chunk_scan_kernel()(x)
            return x * 1.0

        return gpu_check.compare(fn, {"x": x}, ("x",), "fp32", ctx, True, "")

    good, bad, idle = run(1 + 1e-4, True), run(1.01, True), run(1.01, False)
    assert good["fast"] == "pass" and good["fast_calls"]["ssd_triton"] == 1
    assert good["worst_rel_l2"] == pytest.approx(1e-4, rel=1e-3)
    assert good["torch_vs_f64"]["out"]["rel_l2"] < 1e-7  # the torch path never saw the kernel
    assert bad["fast"] == "FAIL"
    assert bad["fast_vs_torch"]["dx"]["rel_l2"] == pytest.approx(1e-2, rel=1e-4)
    assert idle["fast"].startswith("not taken")
