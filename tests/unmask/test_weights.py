"""unmask.weights: fetching, verifying and caching pretrained files, served here as small stand-ins through
file:// URLs (no network); availability checks that only look; the CLI (`unmask weights`, `--offline`), the
paper configurations' preflight and the one line a run without the perceptual term prints."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from click.testing import CliRunner

from maskgen.files import TMP_MARK, exclusive_lock
from tests.testdata import REPO
from unmask import metrics, weights
from unmask.cli import main, train_config
from unmask.config import Config
from unmask.evaluation.scores import image_metric_plan
from unmask.metrics import fid as fid_module
from unmask.metrics import lpips as lpips_module
from unmask.models.vgg import find_vgg19_weights
from unmask.training.options import RunOptions
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

    # Placed by hand: listed as a mismatch and refused on use. Offline it stays as it is (never used); where
    # the network may be used, the fetch removes it (under its lock) and puts the published bytes there.
    placed = cache / "vgg19-dcbb9e9d.pth"
    placed.write_bytes(b"not VGG19 either")
    found = weights.status("vgg19")
    assert found.present and not found.verified and "refused" in found.problem
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    path, reason = find_vgg19_weights()
    assert path is None and f"refused {placed}" in reason and "downloads are off" in reason and "\n" not in reason
    assert placed.read_bytes() == b"not VGG19 either"
    monkeypatch.delenv(weights.OFFLINE_ENV)
    stand_in(monkeypatch, tmp_path, "vgg19", b"the published VGG19")
    assert weights.ensure("vgg19") == placed and placed.read_bytes() == b"the published VGG19"


def test_the_name_prefix_is_checked_where_no_full_digest_is_known(cache, tmp_path, monkeypatch):
    content = b"weights with only a hub-style name"
    prefix = hashlib.sha256(content).hexdigest()[:8]
    stand_in(monkeypatch, tmp_path, "lpips-linear", content, file_name=f"thing-{prefix}.pth", sha256=None)
    assert weights.ensure("lpips-linear") == cache / f"thing-{prefix}.pth"
    wrong = cache / "thing-00000000.pth"
    wrong.write_bytes(content)
    assert "prefix" in weights.file_problem(wrong) and weights.file_problem(tmp_path / "plain.pth") is None


def test_offline_nothing_is_fetched_and_training_goes_on_without_the_term(cache, tmp_path, monkeypatch, downloads,
                                                                          caplog):
    stand_in(monkeypatch, tmp_path, "vgg19", b"would be downloadable")
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.raises(weights.WeightsError, match="downloads are off"):
        weights.ensure("vgg19")
    assert downloads == []
    perceptual, meta = resolve_perceptual(Config(), RunOptions(tmp_path, tmp_path / "run"),
                                          SimpleNamespace(is_main=True))
    assert perceptual is None and meta["perceptual"] is False and "vgg19-dcbb9e9d.pth" in meta["perceptual_reason"]
    [said] = [r for r in caplog.records if "PERCEPTUAL" in r.getMessage()]
    assert said.levelno == logging.WARNING and "\n" not in said.getMessage()
    assert said.getMessage().startswith(f"STAGE 2 TRAINS WITHOUT THE PERCEPTUAL LOSS: {meta['perceptual_reason']}. ")

    caplog.clear()  # another rank than the first: nothing said (rank 0 says it)
    resolve_perceptual(Config(), RunOptions(tmp_path, tmp_path / "run"), SimpleNamespace(is_main=False))
    assert caplog.records == []


@pytest.mark.slow
def test_a_run_without_the_perceptual_term_prints_one_clean_line(cache, tmp_path, dataset_dir):
    """`unmask train` as a person runs it: the line is the run log's WARNING line, with no warnings-module
    source prefix (it was `unmask:0: PerceptualLossDisabled: ...`); run.json records perceptual=false."""
    run = tmp_path / "run"
    env = {**os.environ, weights.OFFLINE_ENV: "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "unmask.cli", "train", "--stage", "gan", "--data", str(dataset_dir), "--out", str(run),
         "--preset", "tiny", "--resolution", "32", "--batch-size", "4", "--steps", "1", "--num-workers", "0",
         "--set", "train.val_max_batches=1", "--device", "cpu", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "PERCEPTUAL" in line]
    assert line.startswith("WARNING STAGE 2 TRAINS WITHOUT THE PERCEPTUAL LOSS: no VGG19 weights: "
                           f"vgg19-dcbb9e9d.pth not found in {cache} and downloads are off")
    assert "Warning" not in done.stderr and "unmask:0" not in done.stderr
    assert json.loads((run / "run.json").read_text())["stages"]["gan"]["perceptual"] is False


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


def lpips_stand_ins(monkeypatch, tmp_path) -> None:
    """Both LPIPS files as stand-ins (random layers in the published layouts), served for download."""
    torch.manual_seed(0)
    model = lpips_module.LPIPSAlex()
    backbone = {f"features.{index}.{kind}": getattr(model.convs[n], kind).detach()
                for n, index in enumerate(lpips_module.CONV_INDICES) for kind in ("weight", "bias")}
    linear = {f"lin{n}.model.1.weight": lin.weight.detach().abs() for n, lin in enumerate(model.lins)}
    for name, state in (("lpips-alexnet", backbone), ("lpips-linear", linear)):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        stand_in(monkeypatch, tmp_path, name, buffer.getvalue())


def test_asking_whether_a_metric_is_available_downloads_nothing(cache, tmp_path, monkeypatch, downloads):
    lpips_stand_ins(monkeypatch, tmp_path)
    stand_in(monkeypatch, tmp_path, "fid-inception", b"fid stand-in")
    # Downloadable (not offline): available, and nothing is fetched by asking.
    assert metrics.get("lpips").availability() and metrics.get("fid").availability()
    assert metrics.list_metrics(available_only=True)[-2:] == ["lpips", "sharpness"]
    assert downloads == [] and not cache.exists()
    assert lpips_module.unavailable_reason() is None and fid_module.unavailable_reason() is None
    # Computed: the files are fetched then, once.
    image = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy()
    assert lpips_module.lpips(image, image) == pytest.approx(0.0, abs=1e-7)
    assert lpips_module.lpips(image, image) == pytest.approx(0.0, abs=1e-7)
    assert [url.rsplit("/", 1)[1] for url in downloads] == ["alexnet-owt-7be5be79.pth", "lpips-v0.1-alex.pth"]

    # Offline, what is missing is unavailable, saying why; what is cached (verified) stays available.
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    assert lpips_module.unavailable_reason() is None
    reason = metrics.get("fid").availability().reason
    assert reason == (f"FID Inception weights unavailable: pt_inception-2015-12-05-6726825d.pth not found in {cache} "
                      "and downloads are off (UNMASK_OFFLINE=1 / --offline): place it there by hand, or run "
                      "`unmask weights fetch fid-inception` where the network is reachable")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert lpips_module.unavailable_reason().startswith("LPIPS unavailable: alexnet-owt-7be5be79.pth not found in ")
    assert len(downloads) == 2


def test_an_evaluation_fetches_the_lpips_files_at_its_start_or_says_why_not(cache, tmp_path, monkeypatch, downloads):
    lpips_stand_ins(monkeypatch, tmp_path)
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    plan, options = image_metric_plan(64, None, "FID: its reason")
    assert plan["lpips"] == lpips_module.unavailable_reason() and "downloads are off" in plan["lpips"]
    assert plan["fid"] == "FID: its reason" and options == {} and downloads == []

    monkeypatch.delenv(weights.OFFLINE_ENV)
    plan, options = image_metric_plan(64, None, None)
    assert plan["lpips"] is None and len(downloads) == 2  # fetched before the first image, not during
    assert options == {"backbone_weights": str(cache / "alexnet-owt-7be5be79.pth"),
                       "linear_weights": str(cache / "lpips-v0.1-alex.pth")}


def test_a_mismatching_alias_is_not_used_nor_removed(cache, tmp_path, monkeypatch, downloads, caplog):
    """torch-fidelity's copy of FID's file belongs to torch-fidelity: used when it verifies, else left alone."""
    alias = cache / weights.FILES["fid-inception"].aliases[0]
    cache.mkdir(parents=True)
    alias.write_bytes(b"torch-fidelity's file, other bytes")
    entry = stand_in(monkeypatch, tmp_path, "fid-inception", b"the published FID Inception")
    found = weights.status("fid-inception")
    assert not found.present and found.path == cache / entry.file_name
    weights.status("fid-inception")
    [said] = [r.getMessage() for r in caplog.records if str(alias) in r.getMessage()]  # once
    assert said.startswith(f"not using {alias} (another tool's copy of {entry.file_name}): refused {alias}: SHA-256")

    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.raises(weights.WeightsError, match=f"{entry.file_name} not found in"):
        weights.ensure("fid-inception")
    monkeypatch.delenv(weights.OFFLINE_ENV)
    assert weights.ensure("fid-inception") == cache / entry.file_name and downloads == [entry.url]
    assert alias.read_bytes() == b"torch-fidelity's file, other bytes"

    (cache / entry.file_name).unlink()  # a verified alias is used as it is
    alias.write_bytes(b"the published FID Inception")
    assert weights.ensure("fid-inception") == alias and downloads == [entry.url]


def test_a_refused_file_is_removed_only_under_the_fetch_lock(cache, tmp_path, monkeypatch, downloads):
    """While another process holds the lock (fetching), nothing is removed: once it has put the verified file
    there, that file is used, not deleted and fetched again."""
    entry = stand_in(monkeypatch, tmp_path, "vgg19", b"the published VGG19")
    path = cache / entry.file_name
    cache.mkdir(parents=True)
    path.write_bytes(b"an older, wrong file")
    waiting, real_lock = threading.Event(), weights.exclusive_lock

    def announced(lock_path):
        waiting.set()
        return real_lock(lock_path)

    monkeypatch.setattr(weights, "exclusive_lock", announced)
    got = []
    with exclusive_lock(cache / weights.LOCK_NAME):  # the other process's fetch
        worker = threading.Thread(target=lambda: got.append(weights.ensure("vgg19")))
        worker.start()
        assert waiting.wait(timeout=60)
        assert path.read_bytes() == b"an older, wrong file"  # still there: nothing removed outside the lock
        path.write_bytes(b"the published VGG19")  # what the other fetch leaves
    worker.join(timeout=60)
    assert got == [path] and path.read_bytes() == b"the published VGG19" and downloads == []


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
    for name in ("vgg19", "fid-inception"):
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


def load_exp():
    spec = importlib.util.spec_from_file_location("paper_exp", REPO / "pipelines" / "exp.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    return exp


def test_which_files_a_run_requires_is_one_rule_of_its_config():
    paper = Config().replace(**{"train.require_pretrained": True})
    assert weights.required_for(Config()) == ()  # not required: a run goes on without them, loudly
    assert weights.required_for(paper) == ("vgg19", "fid-inception")
    assert weights.required_for(paper.replace(**{"loss.per": 0.0})) == ("fid-inception",)


def test_the_preflight_reads_dvc_yamls_train_commands_as_unmask_train_does(cache, tmp_path, monkeypatch,
                                                                           dataset_dir):
    exp = load_exp()
    params = exp.merged(yaml.safe_load(exp.PARAMS.read_text()), yaml.safe_load(
        (REPO / "pipelines" / "celeba256.yaml").read_text()))
    commands = exp.train_commands(params)
    assert list(commands) == ["train@seg", "train@gan", "train@one_stage", "train@recon_only"]
    assert commands["train@gan"][:8] == ["--stage", "gan", "--steps", "62500", "--adv", "0.1", "--rec", "1.0"]

    # The config `unmask train` itself builds from each command (caught before training; on this CPU).
    trained = []
    monkeypatch.setattr("unmask.training.loop.train", lambda cfg, opts: trained.append(cfg) or {})
    for args in commands.values():
        assert invoke("train", *args, "--data", str(dataset_dir), "--device", "cpu").exit_code == 0
        assert train_config(args) == trained[-1]
    assert {weights.required_for(config) for config in trained} == {("vgg19", "fid-inception")}

    # per 0: stage 2 needs no VGG19, but train@seg (no --per: its preset's loss.per) still asks for it, as
    # `unmask train` would at that stage's start: the preflight says so now (it once read train.per only).
    stand_in(monkeypatch, tmp_path, "fid-inception", b"fid stand-in")
    weights.fetch("fid-inception")
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    no_perceptual = exp.merged(params, {"train": {"per": 0.0}})
    assert [weights.required_for(train_config(a)) for a in exp.train_commands(no_perceptual).values()] == [
        ("vgg19", "fid-inception"), ("fid-inception",), ("fid-inception",), ("fid-inception",)]
    assert exp.weights_problem(no_perceptual).startswith("train.require_pretrained: vgg19-dcbb9e9d.pth not found")
    assert exp.weights_problem(exp.merged(no_perceptual, {"train": {"require_pretrained": False}})) is None

    # A value `unmask train` refuses stops the preflight too, in its words.
    bad = exp.merged(params, {"train": {"batch_size": 0}})
    assert exp.weights_problem(bad).startswith("dvc.yaml train@seg: Invalid value for '--batch-size': ")
