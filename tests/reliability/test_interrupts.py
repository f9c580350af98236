"""Ctrl-C (SIGINT) at any moment of a command's start-up ends it with exit 130 and ``interrupted``.

The moments that went wrong were inside imports (torch's takes seconds): a KeyboardInterrupt raised there
came out as a ``RuntimeError`` (Python 3.11 wraps one raised while a class is created), or aborted the
process (raised in Python code that torch's C++ initialisation called). Imports now finish first
(``maskgen.clitools.imports_finish_first``). The subprocess tests raise the signal from an import hook at
chosen moments (``interrupting.py``): deterministic, no guessed delays.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from maskgen.cli import main as maskgen_main
from maskgen.clitools import EXIT_INTERRUPTED, imports_finish_first
from tests.testdata import REPO
from tests.unmask.testutils import write_split

HOOK = Path(__file__).with_name("interrupting.py")
MOMENTS = {  # where in the start-up of `unmask train` the Ctrl-C comes: (WHEN, MODULE) of interrupting.py
    "while the command line's own modules are imported (maskgen.launch)": ("import", "click"),
    "in torch's C++ initialisation, in Python code it calls": ("import", "torch._opaque_base"),
    "while torch's import creates a class (__set_name__)": ("set_name", "torch"),
}


@pytest.mark.slow
@pytest.mark.timing
def test_ctrl_c_during_start_up_exits_130_saying_interrupted(tmp_path):
    missing = [m for _, m in MOMENTS.values() if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"this torch has no {', '.join(missing)}: choose other moments")
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", [2])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    started = {}
    for name, (when, module) in MOMENTS.items():  # at once: each spends its seconds importing
        mark = tmp_path / f"{when}-{module}.json"
        command = [sys.executable, str(HOOK), str(mark), when, module, "unmask", "train", "--data", str(data),
                   "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
        started[name] = (mark, subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True))
    for name, (mark, process) in started.items():
        out, err = process.communicate(timeout=300)
        moment = json.loads(mark.read_text())
        assert moment["reached"], f"{name}: the moment never came"
        assert (process.returncode, out, err) == (EXIT_INTERRUPTED, "", "interrupted\n"), name
        assert moment["whole"], f"{name}: the module was left half imported"
    assert not (tmp_path / "run").exists()


@pytest.mark.timing
def test_an_interrupt_during_an_import_is_raised_when_the_import_ends(tmp_path, monkeypatch):
    (tmp_path / "interrupted_module.py").write_text(
        "import signal\nsignal.raise_signal(signal.SIGINT)\nWHOLE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "interrupted_module", raising=False)
    real_import = builtins.__import__
    with pytest.raises(KeyboardInterrupt), imports_finish_first():
        import interrupted_module  # noqa: F401
    assert sys.modules.pop("interrupted_module").WHOLE
    assert builtins.__import__ is real_import
    with imports_finish_first():  # a failing import fails as it would, and nothing is held
        with pytest.raises(ModuleNotFoundError):
            import no_such_module_here  # noqa: F401
    assert builtins.__import__ is real_import


def test_an_error_caused_by_an_interrupt_is_an_interruption(monkeypatch, tmp_path):
    """A library that turns the KeyboardInterrupt into its own error (Python 3.11 does, in class creation)."""
    import maskgen.build

    def build(_config):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Error calling __set_name__ on 'cached_property' instance") from interrupt

    monkeypatch.setattr(maskgen.build, "build", build)
    result = CliRunner().invoke(maskgen_main, ["build", "--source", str(tmp_path), "--out", str(tmp_path / "out"),
                                               "--no-progress"])
    assert (result.exit_code, result.output) == (EXIT_INTERRUPTED, "interrupted\n")


def test_ctrl_c_after_the_command_has_ended_changes_nothing(tmp_path):
    """The work is done and the exit status decided: a Ctrl-C while Python shuts down must not turn a
    success into exit 130 (or a traceback)."""
    mark = tmp_path / "exit.json"
    done = subprocess.run([sys.executable, str(HOOK), str(mark), "exit", "-", "maskgen", "--help"],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stderr) == (0, "interrupted at exit\n")  # the signal came, and was ignored
    assert "Usage: maskgen" in done.stdout
