"""unmask.weights: fetching, verifying and caching pretrained files, served here as small stand-ins through
file:// URLs (no network); the CLI (`unmask weights`, `--offline`) and the paper configurations' preflight."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import sys
import urllib.request
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from maskgen.files import TMP_MARK
from tests.testdata import REPO
from unmask import weights
from unmask.cli import main
from unmask.config import Config
from unmask.metrics import lpips as lpips_module
from unmask.models.vgg import find_vgg19_weights
from unmask.training.options import PerceptualLossDisabled, RunOptions
from unmask.training.stages import resolve_perceptual


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache under TORCH_HOME (as users move it), downloads allowed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    folder = weights.cache_dir()
    assert folder == tmp_path / "torch_home" / "hub" / "checkpoints"
    return folder


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """The URLs opened (urlopen still does the work)."""
    opened, real = [], urllib.request.urlopen

    def counting(request, *args, **kwargs):
        opened.append(request.full_url)
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting)
    return opened


def serve(tmp_path: Path, file_name: str, content: bytes) -> str:
    served = tmp_path / "server" / file_name
    served.parent.mkdir(parents=True, exist_ok=True)
    served.write_bytes(content)
    return served.as_uri()


def stand_in(monkeypatch, tmp_path: Path, name: str, content: bytes, **changes) -> weights.PretrainedFile:
    """Table entry ``name`` replaced by a small file served from tmp_path, with its true SHA-256."""
    entry = weights.FILES[name]
    changes = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), **changes}
    entry = dataclasses.replace(entry, url=serve(tmp_path, entry.file_name, content), **changes)
    monkeypatch.setitem(weights.FILES, name, entry)
    return entry


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TMP_MARK in p.name) if folder.is_dir() else []


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_downloads_into_the_cache_once_then_reuses_it(cache, tmp_path, monkeypatch, downloads):
    content = b"stand-in vgg19 weights" * 1000
    entry = stand_in(monkeypatch, tmp_path, "vgg19", content)
    path = weights.ensure("vgg19")
    assert path == cache / "vgg19-dcbb9e9d.pth" and path.read_bytes() == content
    assert downloads == [entry.url] and leftovers(cache) == []
    assert weights.ensure("vgg19") == path and downloads == [entry.url]  # the cache, not a second download
    assert find_vgg19_weights() == (path, f"weights from the torch hub cache {path}")
    assert weights.status("vgg19").verified


def test_a_mismatching_download_is_refused_and_nothing_kept(cache, tmp_path, monkeypatch):
    stand_in(monkeypatch, tmp_path, "vgg19", b"the expected bytes")
    served = serve(tmp_path, "other.pth", b"other bytes")
    monkeypatch.setitem(weights.FILES, "vgg19", dataclasses.replace(weights.FILES["vgg19"], url=served))
    with pytest.raises(weights.WeightsError) as refused:
        weights.ensure("vgg19")
    message = str(refused.value)
    assert "\n" not in message and served in message
    assert hashlib.sha256(b"the expected bytes").hexdigest() in message
    assert hashlib.sha256(b"other bytes").hexdigest() in message
    assert not (cache / "vgg19-dcbb9e9d.pth").exists() and leftovers(cache) == []


def test_fake_contents_under_the_real_name_are_refused(cache, tmp_path, monkeypatch):
    # The real table (full SHA-256 known): a file named vgg19-dcbb9e9d.pth is not enough.
    fake = serve(tmp_path, "vgg19-dcbb9e9d.pth", b"not VGG19")
    monkeypatch.setitem(weights.FILES, "vgg19", dataclasses.replace(weights.FILES["vgg19"], url=fake))
    with pytest.raises(weights.WeightsError, match="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"):
        weights.ensure("vgg19")
    assert list(cache.glob("vgg19*")) == []

    # Placed by hand: listed as a mismatch, then refused and removed on use; offline, nothing replaces it.
    placed = cache / "vgg19-dcbb9e9d.pth"
    placed.write_bytes(b"not VGG19 either")
    found = weights.status("vgg19")
    assert found.present and not found.verified and "refused" in found.problem
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    path, reason = find_vgg19_weights()
    assert path is None and "refused" in reason and "removed" in reason and not placed.exists()


def test_the_name_prefix_is_checked_where_no_full_digest_is_known(cache, tmp_path, monkeypatch):
    content = b"weights with only a hub-style name"
    prefix = hashlib.sha256(content).hexdigest()[:8]
    stand_in(monkeypatch, tmp_path, "lpips-linear", content, file_name=f"thing-{prefix}.pth", sha256=None)
    assert weights.ensure("lpips-linear") == cache / f"thing-{prefix}.pth"
    wrong = cache / "thing-00000000.pth"
    wrong.write_bytes(content)
    assert "prefix" in weights.file_problem(wrong) and weights.file_problem(tmp_path / "plain.pth") is None


def test_offline_nothing_is_fetched_and_training_goes_on_without_the_term(cache, tmp_path, monkeypatch, downloads):
    stand_in(monkeypatch, tmp_path, "vgg19", b"would be downloadable")
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.raises(weights.WeightsError, match="downloads are off"):
        weights.ensure("vgg19")
    assert downloads == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        perceptual, meta = resolve_perceptual(Config(), RunOptions(tmp_path, tmp_path / "run"),
                                              SimpleNamespace(is_main=True))
    assert perceptual is None and meta["perceptual"] is False and "vgg19-dcbb9e9d.pth" in meta["perceptual_reason"]
    [warning] = caught
    assert warning.category is PerceptualLossDisabled
    shown = warnings.formatwarning(warning.message, warning.category, warning.filename, warning.lineno)
    assert shown.count("\n") == 1 and "WITHOUT THE PERCEPTUAL LOSS" in shown  # one line, no source line


def test_an_unreachable_url_is_one_line_saying_how_to_place_the_file(cache, tmp_path, monkeypatch):
    for url in ((tmp_path / "nowhere" / "vgg19-dcbb9e9d.pth").as_uri(), "http://127.0.0.1:9/vgg19-dcbb9e9d.pth"):
        monkeypatch.setitem(weights.FILES, "vgg19", dataclasses.replace(weights.FILES["vgg19"], url=url))
        path, reason = find_vgg19_weights()
        assert path is None and "\n" not in reason
        assert reason.startswith(f"no VGG19 weights: cannot download {url} (")
        assert f"place the file at {cache / 'vgg19-dcbb9e9d.pth'} by hand" in reason
    assert leftovers(cache) == [] and not (cache / "vgg19-dcbb9e9d.pth").exists()


def test_a_download_that_breaks_off_leaves_nothing(cache, tmp_path, monkeypatch):
    stand_in(monkeypatch, tmp_path, "fid-inception", b"x" * (3 * weights.BLOCK))

    class BreaksOff(io.BytesIO):
        def read(self, size=-1):
            if self.tell() >= weights.BLOCK:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(size)

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: BreaksOff(b"x" * (3 * weights.BLOCK)))
    with pytest.raises(weights.WeightsError, match="Connection reset by peer"):
        weights.ensure("fid-inception")
    assert sorted(p.name for p in cache.iterdir()) == [weights.LOCK_NAME]  # no partial file, no temporary


def test_lpips_files_come_from_the_cache(cache, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = lpips_module.LPIPSAlex()
    backbone = {f"features.{index}.{kind}": getattr(model.convs[n], kind).detach()
                for n, index in enumerate(lpips_module.CONV_INDICES) for kind in ("weight", "bias")}
    linear = {f"lin{n}.model.1.weight": lin.weight.detach().abs() for n, lin in enumerate(model.lins)}
    for name, state in (("lpips-alexnet", backbone), ("lpips-linear", linear)):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        stand_in(monkeypatch, tmp_path, name, buffer.getvalue())
    assert lpips_module.unavailable_reason() is None
    image = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy()
    assert lpips_module.lpips(image, image) == pytest.approx(0.0, abs=1e-7)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    assert "alexnet-owt-7be5be79.pth not found" in lpips_module.unavailable_reason()


def test_weights_check_and_fetch_commands(cache, tmp_path, monkeypatch):
    checked = invoke("weights", "check")
    assert checked.exit_code == 1 and checked.output.count(" missing ") == len(weights.FILES)
    assert f"vgg19          missing   {cache / 'vgg19-dcbb9e9d.pth'}" in checked.output

    stand_in(monkeypatch, tmp_path, "vgg19", b"vgg stand-in")
    fetched = invoke("weights", "fetch", "vgg19")
    assert fetched.exit_code == 0 and fetched.output.strip() == f"vgg19: {cache / 'vgg19-dcbb9e9d.pth'}"
    checked = invoke("weights", "check")
    assert f"vgg19          verified  {cache / 'vgg19-dcbb9e9d.pth'}" in checked.output and checked.exit_code == 1

    offline = invoke("--offline", "weights", "fetch", "vgg19", "fid-inception")  # the cached one is fine
    assert offline.exit_code == 1
    assert offline.output.splitlines()[0] == f"vgg19: {cache / 'vgg19-dcbb9e9d.pth'}"
    assert offline.output.splitlines()[1].startswith("fid-inception: pt_inception-2015-12-05-6726825d.pth not found")
    assert offline.output.splitlines()[2] == "Error: 1 of 2 pretrained file(s) unavailable"
    assert invoke("weights", "fetch", "vgg20").exit_code == 2


def test_paper_configurations_fail_at_the_start_without_weights(cache, tmp_path, monkeypatch, dataset_dir):
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    spec = importlib.util.spec_from_file_location("paper_exp", REPO / "pipelines" / "exp.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    started = []
    monkeypatch.setattr(exp.subprocess, "call", lambda args: started.append(args) or 0)
    for name in ("celeba256", "celeba512"):
        monkeypatch.setattr(sys, "argv", ["exp.py", name])
        with pytest.raises(SystemExit) as stopped:
            exp.main()
        message = str(stopped.value.code)
        assert message.startswith(f"{REPO / 'pipelines' / name}.yaml: train.require_pretrained: ")
        assert "vgg19-dcbb9e9d.pth not found" in message and "\n" not in message
    assert started == []  # DVC never started

    # With the files there (stand-ins here), the experiment starts, asking for the requirement.
    for name in weights.required(perceptual=True):
        stand_in(monkeypatch, tmp_path, name, f"{name} stand-in".encode())
        weights.fetch(name)
    with pytest.raises(SystemExit):
        exp.main()
    assert "train.require_pretrained=True" in started[0]

    # `unmask train` itself: one line before anything is written.
    run = tmp_path / "run"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    result = invoke("train", "--stage", "seg", "--data", str(dataset_dir), "--out", str(run), "--preset", "tiny",
                    "--steps", "1", "--device", "cpu", "--set", "train.require_pretrained=true", "--no-progress")
    assert result.exit_code == 1 and not run.exists()
    assert result.output.startswith("Error: train.require_pretrained: vgg19-dcbb9e9d.pth not found in ")
    assert result.output.count("\n") == 1
