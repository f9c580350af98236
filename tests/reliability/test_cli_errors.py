"""The command lines' contract: every option checked before anything is written; exit 0 ok, 1 user
error or failure (one line), 2 usage error, 130 interrupted; a traceback only with ``--debug``."""

from __future__ import annotations

import errno
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.build import MAX_PAIRS_PER_SOURCE, BuildConfig, BuildError, build
from maskgen.cli import main as maskgen_main
from maskgen.clitools import EXIT_INTERRUPTED, describe
from maskgen.compose import MaskOptions
from tests.testdata import REPO
from unmask.cli import main as unmask_main


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A folder with one image: enough for a build to start writing if nothing stopped it."""
    root = tmp_path_factory.mktemp("source")
    cv2.imwrite(str(root / "face.jpg"), np.full((64, 64, 3), 128, np.uint8))
    return root


def _pack(root: Path, cfg: str | None, image: np.ndarray | None = None) -> Path:
    root.mkdir()
    if cfg is not None:
        (root / "masks.cfg").write_text(textwrap.dedent(cfg))
    if image is not None:
        (root / "templates").mkdir()
        cv2.imwrite(str(root / "templates" / "surgical.png"), image)
    return root


ANCHORS = "[surgical]\nmask_a: 10, 20\nmask_b: 50, 5\nmask_c: 90, 20\nmask_d: 12, 60\nmask_e: 50, 95\nmask_f: 88, 60\n"
OPAQUE = np.full((100, 100, 4), 255, np.uint8)
PACKS = {  # name: (masks.cfg, template image, expected message)
    "no_cfg": (None, OPAQUE, "no masks.cfg"),
    "missing_image": (ANCHORS, None, r"template image for \[surgical\] not found"),
    "not_ini": ("just some text\n", OPAQUE, "not a MaskTheFace masks.cfg"),
    "no_template": ("[empty]\n[inpaint]\n", OPAQUE, "no templates"),
    "bad_anchors": (ANCHORS.replace("mask_c: 90, 20", "mask_c: 10, 20"), OPAQUE, "unusable anchors"),
    "nan_anchor": (ANCHORS.replace("mask_e: 50, 95", "mask_e: 50, nan"), OPAQUE, "unusable anchors"),
    "transparent": (ANCHORS, np.zeros((100, 100, 4), np.uint8), "fully transparent"),
    "no_alpha": (ANCHORS, OPAQUE[..., :3], "expected an RGBA PNG"),
    # a '%' is part of a file name (no interpolation): read as it is, and this one is not there
    "percent_name": (ANCHORS + "template = templates/50%off.png\n", OPAQUE,
                     r"template image for \[surgical\] not found"),
}


USAGE, USER = 2, 1  # one option's value bad on its own; anything else (maskgen.clitools)


@pytest.mark.parametrize("args,code,message", [
    (["--face-scale", "-0.5"], USAGE, "must be in"),
    (["--face-scale", "0"], USAGE, "must be in"),
    (["--face-scale", "nan"], USAGE, "must be in"),
    (["--face-scale", "3"], USAGE, "must be in"),
    (["--face-scale", "0.8-0.6"], USAGE, "must be in"),
    (["--face-scale", "0.5-1.5"], USAGE, "must be in"),
    (["--face-scale", "0.5-0.6-0.7"], USAGE, "use a number such as 0.72 or a range such as 0.6-0.8"),
    (["--face-scale", "wide"], USAGE, "use a number such as 0.72 or a range such as 0.6-0.8"),
    (["--split", "nan/50/50"], USAGE, "finite and non-negative"),
    (["--split", "inf,0,0"], USAGE, "finite and non-negative"),
    (["--split", "-10/60/50"], USAGE, "finite and non-negative"),
    (["--split", "80/20"], USAGE, "three numbers"),
    (["--split", "8/1/1"], USAGE, "sum to 1 or 100"),
    (["--split", "80/x/10"], USAGE, "three numbers"),
    (["--pairs", "0"], USAGE, "at least 1"),
    (["--pairs", "1000000000"], USER, f"--pairs: at most {MAX_PAIRS_PER_SOURCE} per source image"),  # 1 source
    (["--workers", "0"], USAGE, "must be -1"),
    (["--workers", "-5"], USAGE, "must be -1"),
    (["--shard-size", "0"], USAGE, "at least 1"),
    (["--shard-size", "-1"], USAGE, "at least 1"),
    (["--jpeg-quality", "0"], USAGE, "must be in 1..100"),
    (["--jpeg-quality", "101"], USAGE, "must be in 1..100"),
    (["--resolution", "100"], USAGE, "must be one of 128, 256"),
    (["--res", "100"], USAGE, "must be one of 128, 256"),  # the deprecated name, checked alike
    (["--seed", "-1"], USAGE, "at least 0"),
    (["--part", "0/3"], USAGE, "K/N"),
    (["--part", "9/8"], USAGE, "K/N"),
    (["--mask-types", "surgical=nan"], USAGE, "finite"),
    (["--mask-types", "scarf"], USAGE, "unknown mask type"),
    (["--mask-types", "surgical,surgical"], USAGE, "more than once"),
    (["--wear", "correct=inf"], USAGE, "finite"),
    (["--wear", "correct=0,nose=0"], USAGE, "not all zero"),
    (["--template-share", "nan"], USAGE, "must be in 0..1"),
    (["--template-share", "0.5"], USER, "--template-share needs --templates"),  # fine alone
    (["--backend", "dask"], USER, "--scheduler"),
    *[(["--templates", f"{{tmp}}/{name}"], USER, message) for name, (_, _, message) in PACKS.items()],  # files
])
def test_build_options_are_refused_in_one_line_before_anything_is_written(source, tmp_path, args, code, message):
    for name, (cfg, image, _) in PACKS.items():
        if f"{{tmp}}/{name}" in args:
            _pack(tmp_path / name, cfg, image)
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(maskgen_main, ["build", "--source", str(source), "--out", str(out), *args,
                                               "--no-progress"])
    assert result.exit_code == code, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert __import__("re").search(message, errors[0]), errors[0]
    if code == USAGE:  # click's message, naming the option
        assert errors[0].startswith(f"Error: Invalid value for '{args[0]}'"), errors[0]
    assert not out.exists()


def test_the_pairs_bound_is_per_source_image(source, tmp_path):
    config = BuildConfig(source=str(source), out=str(tmp_path / "out"), workers=1, progress=False,
                         pairs=MAX_PAIRS_PER_SOURCE + 1)  # the folder has one image
    most = MAX_PAIRS_PER_SOURCE
    with pytest.raises(BuildError, match=f"at most {most} per source image, {most} for the 1 in .*got {most + 1}"):
        build(config)
    assert not (tmp_path / "out").exists()


def test_each_build_option_is_checked_by_the_library_s_own_check(monkeypatch, source, tmp_path):
    """The command line holds no copy of a range: it asks maskgen.build, as BuildConfig.validate does."""
    import maskgen.build

    real = maskgen.build.option_problem
    monkeypatch.setattr(maskgen.build, "option_problem", lambda name, value: "a rule changed in the library"
                        if name == "shard_size" else real(name, value))
    result = CliRunner().invoke(maskgen_main, ["build", "--source", str(source), "--out", str(tmp_path / "out"),
                                               "--shard-size", "10", "--no-progress"])
    assert result.exit_code == USAGE and "'--shard-size': a rule changed in the library" in result.output


@pytest.mark.parametrize("change,message", [
    ({"face_scale": -1.0}, "--face-scale"),
    ({"face_scale": math.nan}, "--face-scale"),
    ({"face_scale": (0.8, 0.6)}, "--face-scale"),
    ({"face_scale": (0.5, math.nan)}, "--face-scale"),
    ({"face_scale": 1e-1}, "--face-scale"),
    ({"split": (math.nan, 0.5, 0.5)}, "--split"),
    ({"split": (80, 10, 10)}, "sum to 1"),
    ({"workers": 0}, "--workers"),
    ({"pairs": 2.5}, "--pairs"),
    ({"jpeg_quality": True}, "--jpeg-quality"),
    ({"seed": -3}, "--seed"),
    ({"backend": "threads"}, "--backend"),
    ({"landmarks": "/nonexistent/landmarks.parquet"}, "--landmarks"),
    ({"mask": MaskOptions(type_weights=(("scarf", 1.0),))}, "unknown mask type"),
    ({"mask": MaskOptions(wear_weights=(("correct", math.inf),))}, "finite"),
    ({"mask": MaskOptions(templates=("/nonexistent/pack",))}, "no masks.cfg"),
])
def test_the_library_api_gets_the_same_checks(source, tmp_path, change, message):
    config = BuildConfig(**{"source": str(source), "out": str(tmp_path / "out"), "workers": 1, "progress": False,
                            **change})
    with pytest.raises(BuildError, match=message):
        build(config)
    assert not (tmp_path / "out").exists()


def test_a_good_pack_and_split_pass_the_checks(source, tmp_path):
    pack = _pack(tmp_path / "pack", ANCHORS, OPAQUE)
    options = MaskOptions.create(["surgical"], [pack], template_share=0.5)
    BuildConfig(source=str(source), out=str(tmp_path / "out"), mask=options, split=(0.7, 0.2, 0.1),
                face_scale=0.25).validate()
    BuildConfig(source=str(source), out=str(tmp_path / "out"), split=(1.0, 0.0, 0.0), face_scale=1.0).validate()


@pytest.mark.parametrize("args,message", [
    (["-n", "0"], "'-n': must be at least 1"),
    (["-n", "-3"], "'-n': must be at least 1"),
    (["--columns", "0"], "'--columns': must be at least 1"),
    (["-o", "{tmp}/sheet"], "'-o' / '--output': 'sheet' has no suffix"),
    (["-o", "{tmp}/sheet.txt"], "'-o' / '--output': no image format has the suffix '.txt'"),
])
def test_preview_options_are_usage_errors(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(maskgen_main, ["preview", str(tmp_path), *args])  # checked before the dataset
    assert result.exit_code == USAGE, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: Invalid value for {message}"), result.output
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet_checks_its_counts(tmp_path):
    from maskgen.preview import contact_sheet

    with pytest.raises(ValueError, match="columns must be at least 1"):
        contact_sheet(tmp_path, columns=0)


TRAIN_ARGS = ["train", "--out", "{tmp}/run", "--device", "cpu", "--no-progress"]


def _train(tmp_path: Path, data: Path, *args: str):
    argv = [a.format(tmp=tmp_path) for a in TRAIN_ARGS] + ["--data", str(data), *args]
    result = CliRunner().invoke(unmask_main, argv)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "run").exists(), "the run folder was written"
    return result.exit_code, errors[0]


@pytest.mark.parametrize("args,message", [
    (["--num-workers", "-3"], "'--num-workers': must be at least 0"),
    (["--lr", "nan"], "'--lr': must be a finite number above 0, got nan"),
    (["--lr", "0"], "'--lr': must be a finite number above 0"),
    (["--lr-milestones", "0.5,1.5"], "'--lr-milestones': must be in (0, 1) (fractions of the run), got 1.5"),
    (["--lr-milestones", "0.5,x"], "'--lr-milestones': comma-separated fractions"),
    (["--steps", "0"], "'--steps': must be at least 1"),
    (["--batch-size", "0"], "'--batch-size': must be at least 1"),
    (["--resolution", "100"], "'--resolution': must be a positive multiple of 32"),
    (["--resolution", "0"], "'--resolution': must be a positive multiple of 32"),
    (["--checkpoint-every", "0"], "'--checkpoint-every': must be at least 1"),
    (["--seed", "-1"], "'--seed': must be at least 0"),
    (["--adv", "-0.1"], "'--adv': must be a finite number at least 0"),
    (["--alpha", "-0.1"], "'--alpha': must be a finite number at least 0"),  # deprecated names: checked alike
    (["--generator-width", "0"], "'--generator-width': must be at least 1"),
    (["--gen-width", "0"], "'--gen-width': must be at least 1"),
    (["--val-max-batches", "0"], "'--val-max-batches': must be at least 1"),
    (["--channels-last", "maybe"], "'--channels-last': 'maybe' is not a valid boolean"),
    (["--set", "seg_optim.lr=nan"], "'--set': seg_optim.lr: must be a finite number above 0"),
    (["--set", "train.num_workers=-1"], "'--set': train.num_workers: must be at least 0"),
    (["--set", "train.batch_size=many"], "'--set': train.batch_size: expected a number"),
    (["--set", "train.nope=1"], "'--set': train.nope: no such config key"),
    (["--set", "gan_optim.betas=[0.5]"], "'--set': gan_optim.betas: needs 2 entries"),
    (["--set", "gan_optim.betas=[0.5,"], "'--set': gan_optim.betas: '[0.5,' is not valid YAML"),
    (["--set", "train.seed={"], "'--set': train.seed: '{' is not valid YAML"),
])
def test_train_options_are_usage_errors_before_the_run_folder(tmp_path, args, message):
    code, error = _train(tmp_path, tmp_path, *args)
    assert code == USAGE and error.startswith(f"Error: Invalid value for {message}"), error


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """Three training samples, one val sample: no maskgen records (a hand-made dataset)."""
    from tests.unmask.testutils import write_split

    data = tmp_path_factory.mktemp("data")
    write_split(data, "train", [3])
    write_split(data, "val", [1], start=100)
    return data


def test_train_problems_beyond_one_value_exit_1_before_the_run_folder(small_data, tmp_path):
    """Values fine alone but not together, a bad --config file, data too small or missing: exit 1, and
    nothing written to --out (a rerun with the corrected command starts afresh)."""
    code, error = _train(tmp_path, small_data, "--gan-maps", "predicted", "--no-map")
    assert code == USER and "train.gan_maps=predicted needs generator.use_map" in error
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  batch_size: 0\n")
    code, error = _train(tmp_path, small_data, "--config", str(config))
    assert code == USER and error == f"Error: {config}: train.batch_size must be at least 1, got 0"
    config.write_text("train: [unclosed\n")
    code, error = _train(tmp_path, small_data, "--config", str(config))
    assert code == USER and error.startswith(f"Error: {config}: while parsing")
    code, error = _train(tmp_path, small_data, "--config", str(config), "--preset", "tiny")
    assert code == USER and "--config and --preset are alternatives" in error
    code, error = _train(tmp_path, small_data, "--preset", "tiny", "--batch-size", "100")
    assert code == USER and "3 train samples are fewer than batch size 100" in error
    empty = tmp_path / "empty"
    empty.mkdir()
    code, error = _train(tmp_path, empty, "--preset", "tiny")
    assert code == USER and f"no train-*.tar shards in {empty}" in error


def test_config_values_are_checked_wherever_they_come_from():
    from unmask.config import Config, value_problem

    assert value_problem("seg_optim.lr", math.inf) == "must be a finite number above 0, got inf"
    assert value_problem("train.steps", None) is None and value_problem("train.epochs", None) == "must have a value"
    for key, value, message in [("seg_optim.lr", math.nan, "seg_optim.lr must be a finite number above 0"),
                                ("train.num_workers", -3, "train.num_workers must be at least 0"),
                                ("train.resolution", -64, "train.resolution must be a positive multiple of 32")]:
        with pytest.raises(ValueError, match=message):
            Config().replace(**{key: value})


# --- how the commands end -------------------------------------------------------------------------------

def _raising(error: BaseException):
    def run(*_args, **_kwargs):
        raise error
    return run


BUILD_ARGS = ["build", "--source", "{source}", "--out", "{out}", "--no-progress"]


@pytest.mark.parametrize("error,expected", [
    (RuntimeError("boom\n  on two lines"),
     "Error: RuntimeError: boom on two lines (run with --debug for the traceback)"),
    (EOFError("Ran out of input"), "Error: EOFError: Ran out of input (run with --debug for the traceback)"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/train-000001.tar"),
     f"Error: /data/train-000001.tar: {os.strerror(errno.ENOSPC)}"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/x"),
     f"Error: /data/x: {os.strerror(errno.EACCES)}"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/x", None, "/ro/y"),
     f"Error: /ro/x -> /ro/y: {os.strerror(errno.EROFS)}"),
    (IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), "/data/stats.json"),
     f"Error: /data/stats.json: {os.strerror(errno.EISDIR)}"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), f"Error: {os.strerror(errno.ENOSPC)} (ENOSPC;"),
])
def test_unexpected_errors_are_one_line_and_exit_1(monkeypatch, source, tmp_path, error, expected):
    import maskgen.build

    monkeypatch.setattr(maskgen.build, "build", _raising(error))
    args = [a.format(source=source, out=tmp_path / "out") for a in BUILD_ARGS]
    result = CliRunner().invoke(maskgen_main, args)
    assert result.exit_code == 1
    assert result.output.startswith(expected) and len(result.output.strip().splitlines()) == 1, result.output


def test_debug_shows_the_traceback(monkeypatch, source, tmp_path):
    import maskgen.build

    monkeypatch.setattr(maskgen.build, "build", _raising(RuntimeError("boom")))
    args = [a.format(source=source, out=tmp_path / "out") for a in BUILD_ARGS]
    result = CliRunner().invoke(maskgen_main, ["--debug", *args])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)  # re-raised: Python prints it


def test_interrupt_exits_130_with_a_word_not_aborted(monkeypatch, source, tmp_path):
    import maskgen.build

    monkeypatch.setattr(maskgen.build, "build", _raising(KeyboardInterrupt()))
    args = [a.format(source=source, out=tmp_path / "out") for a in BUILD_ARGS]
    result = CliRunner().invoke(maskgen_main, args)
    assert result.exit_code == EXIT_INTERRUPTED and "interrupted" in result.output
    assert "Aborted" not in result.output


def test_the_unmask_group_ends_the_same_way(monkeypatch, tmp_path):
    import unmask.evaluation.compare

    monkeypatch.setattr(unmask.evaluation.compare, "write_comparison", _raising(RuntimeError("boom")))
    args = ["compare", "x=metrics.json", "-o", str(tmp_path / "table.md")]
    result = CliRunner().invoke(unmask_main, args)
    assert result.exit_code == 1 and result.output.startswith("Error: RuntimeError: boom (run with --debug")
    result = CliRunner().invoke(unmask_main, ["--debug", *args])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


@pytest.mark.parametrize("option,value", [
    ("--batch-size", "0"), ("--max-samples", "0"), ("--max-samples", "-5"), ("--resolution", "0"),
    ("--resolution", "-64"), ("--inpaint-radius", "0"), ("--max-photos", "0"), ("--sheet-rows", "0"),
    ("--failures", "-1"), ("--impostors", "-1"), ("--batch-size", "many"), ("--resolution", "100"),
])
def test_evaluate_counts_are_checked_in_one_line(tmp_path, option, value):
    checkpoint = tmp_path / "run.pt"
    checkpoint.write_bytes(b"")
    result = CliRunner().invoke(unmask_main, ["evaluate", "--data", str(tmp_path), "--checkpoint", str(checkpoint),
                                              "-o", str(tmp_path / "eval"), option, value])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and option in errors[0], result.output
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("command", ["compare", "report"])
@pytest.mark.parametrize("content,message", [
    (None, "no metrics.json in"), ("{", "not valid JSON"), ("[1, 2]", "not a metrics.json")])
def test_compare_and_report_name_a_bad_input_in_one_line(tmp_path, command, content, message):
    metrics = tmp_path / "metrics.json"
    if content is not None:
        metrics.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(unmask_main, [command, str(metrics), "-o", str(out)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output and "metrics.json" in result.output
    assert not out.exists()


def test_undecodable_file_names_print(tmp_path):
    name = os.fsdecode(b"/data/caf\xe9.jpg")  # surrogate escape: printing it as it is would raise
    line = describe(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name))
    assert line.encode("utf-8") and "caf" in line and os.strerror(errno.ENOENT) in line



def test_a_file_where_a_folder_must_be_made_is_named_as_such(tmp_path):
    """Every -o / --out makes its folders (mkdir parents=True, exist_ok=True): a file in the way gave
    "File exists", which reads as if the output itself were there."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(FileExistsError) as raised:
        (tmp_path / "afile").mkdir(parents=True, exist_ok=True)  # preview -o afile/x.png
    assert describe(raised.value) == f"{tmp_path / 'afile'}: not a folder (a file is where a folder must be)"
    (tmp_path / "dir").mkdir()
    assert "File exists" in describe(FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(tmp_path / "dir")))


# --- real processes: the console scripts and ``python -m`` -------------------------------------------

def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, **kwargs)


def _command(name: str) -> list[str]:
    """The installed console script when it sits next to this Python (then PYTHONPATH makes it run
    this checkout's code), else the module."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.is_file() else [sys.executable, "-m", f"{name}.cli"]


@pytest.mark.slow
def test_console_script_refuses_a_bad_option_as_a_usage_error(source, tmp_path):
    result = _run([*_command("maskgen"), "build", "--source", str(source), "--out", str(tmp_path / "out"),
                   "--face-scale", "-1", "--no-progress"])
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: Invalid value for '--face-scale': must be in")
    assert not (tmp_path / "out").exists()
    failure = _run([*_command("maskgen"), "build", "--source", str(source), "--out", str(tmp_path / "out"),
                    "--backend", "dask", "--no-progress"])  # fine alone, not with the default --scheduler
    assert failure.returncode == 1 and failure.stderr.startswith("Error: --backend dask needs --scheduler")
    assert len(failure.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()
    usage = _run([*_command("unmask"), "evaluate", "--data", str(tmp_path), "--checkpoint", str(source),
                  "--batch-size", "0"])
    assert usage.returncode == 2 and "Traceback" not in usage.stderr and "--batch-size" in usage.stderr


FAILING_BUILD = """
import os, signal, sys, time
import maskgen.build
def failing(config):
    {body}
maskgen.build.build = failing
from maskgen.cli import main
sys.argv = ["maskgen", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("body,debug,code,last_line", [
    ("raise RuntimeError('not\\nexpected')", False, 1,
     "Error: RuntimeError: not expected (run with --debug for the traceback)"),
    ("raise RuntimeError('not expected')", True, 1, "RuntimeError: not expected"),
    ("os.kill(os.getpid(), signal.SIGINT); time.sleep(30)", False, EXIT_INTERRUPTED, "interrupted"),
])
@pytest.mark.slow
@pytest.mark.timing
def test_a_real_process_exits_with_the_code_and_one_line(source, tmp_path, body, debug, code, last_line):
    result = _run([sys.executable, "-c", FAILING_BUILD.format(body=body), *(["--debug"] if debug else []),
                   "build", "--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"])
    lines = result.stderr.splitlines()
    assert result.returncode == code and lines[-1] == last_line, result.stderr
    if debug:
        assert "Traceback (most recent call last):" in lines
    else:
        assert len(lines) == 1, result.stderr
