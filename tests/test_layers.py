"""The layering rules of docs/architecture.md, checked on every import (function-level ones too).

* maskgen never imports unmask (it is usable, and installable, on its own); unmask imports only the
  maskgen modules of ``MASKGEN_FOR_UNMASK`` (the dataset contract, the readers, the one writer, the face
  geometry and the CLI conventions), each with its reason;
* unmask.models imports none of training, data, checkpoint, CLI or evaluation (networks stay
  loadable anywhere); unmask.metrics imports no training code (a metric never depends on how a
  model was trained);
* face geometry lives in maskgen: no module of unmask defines dlib's 68-point index ranges or does
  alignment maths (affine estimation, inversion or warping); it imports them from maskgen;
* no import cycle (see ``import_graph``) and no module over ``MAX_MODULE_LINES`` lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("maskgen", "unmask")

# (importer prefix, forbidden import prefixes, why)
IMPORT_RULES = (
    ("maskgen", ("unmask",), "maskgen never imports unmask"),
    ("unmask.models", ("unmask.training", "unmask.data", "unmask.checkpoint", "unmask.cli", "unmask.evaluation"),
     "models import no training, data, checkpoint, CLI or evaluation"),
    ("unmask.metrics", ("unmask.training", "unmask.losses", "unmask.data", "unmask.checkpoint", "unmask.cli",
                        "unmask.evaluation", "unmask.predict"),
     "metrics import no training code, data, checkpoints, CLI, evaluation or prediction"),
)

# The maskgen modules unmask may import, and why (docs/architecture.md, "What unmask takes from maskgen").
# Everything else of maskgen (building data, masks, templates, compositing) is maskgen's own.
MASKGEN_FOR_UNMASK = {
    "maskgen.format": "the dataset's on-disk contract",
    "maskgen.reader": "the one shard reader",
    "maskgen.verify": "checking a dataset before training or evaluating on it",
    "maskgen.files": "the one atomic writer",
    "maskgen.source": "the one image reader, its limits and faults",
    "maskgen.landmarks": "finding faces in photos",
    "maskgen.face_points": "the geometry on the faces' points",
    "maskgen.align": "the crop and the way back to the photo, as the dataset's",
    "maskgen.clitools": "how the command lines read options and end",
    "maskgen.launch": "the console entry point, Ctrl-C held during imports",
}
MAX_MODULE_LINES = 500  # past this a module holds more than one concern: split it

# dlib's 68-point groups (jaw, brows, nose, eyes, mouth) and their usual unions, as index ranges.
LANDMARK_RANGES = {(0, 17), (17, 22), (22, 27), (17, 27), (27, 31), (31, 36), (27, 36), (36, 42), (42, 48),
                   (36, 48), (48, 60), (60, 68), (48, 68)}
ALIGNMENT_CALLS = {"invertAffineTransform", "getAffineTransform", "estimateAffinePartial2D", "estimateAffine2D",
                   "warpAffine", "getRotationMatrix2D"}


GEOMETRY_MODULES = ("maskgen/face_points.py", "maskgen/landmarks.py", "maskgen/align.py")


def geometry_names() -> tuple[set[str], set[str]]:
    """(public functions, public constants) of maskgen's geometry modules: unmask imports them,
    never redefines them."""
    functions, constants = set(), set()
    for relative in GEOMETRY_MODULES:
        tree = ast.parse((ROOT / relative).read_text())
        functions |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
        for node in tree.body:
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and name.id.isupper():
                        constants.add(name.id)
    return functions, constants


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_from(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` statement in ``package`` imports from."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import statement anywhere in the tree."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)) \
                and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("import_module", "__import__") \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.append((node.lineno, node.args[0].value))  # importlib.import_module("unmask.x")
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = imported_from(node, package)
            # `from . import x` may import a submodule x: record both spellings
            found.append((node.lineno, prefix))
            found += [(node.lineno, f"{prefix}.{alias.name}") for alias in node.names]
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    tree = ast.parse(source)
    problems = []
    for line, name in imports_of(tree, module, is_package):
        for importer, forbidden, why in IMPORT_RULES:
            if _under(module, importer) and any(_under(name, f) for f in forbidden):
                problems.append(f"{module}:{line} imports {name} ({why})")
        if _under(module, "unmask") and _under(name, "maskgen") and name != "maskgen" \
                and not any(_under(name, allowed) for allowed in MASKGEN_FOR_UNMASK):
            problems.append(f"{module}:{line} imports {name} (unmask takes from maskgen only "
                            f"{', '.join(sorted(MASKGEN_FOR_UNMASK))})")
    return problems


def _int(node: ast.AST | None) -> int | None:
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def geometry_violations(source: str, module: str) -> list[str]:
    """Landmark index ranges (``points[36:42]``, ``slice(36, 42)``) and alignment maths in ``module``."""
    problems = []
    functions, constants = geometry_names()
    tree = ast.parse(source)
    for node in tree.body:  # module-level constants
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for name in (n for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)):
            if name.id.lstrip("_") in constants:
                problems.append(f"{module}:{node.lineno} defines {name.id} (maskgen's face geometry has it)")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in functions:
            problems.append(f"{module}:{node.lineno} defines {node.name} (maskgen's face geometry has it)")
        if isinstance(node, ast.ImportFrom) and node.module == "cv2":
            problems += [f"{module}:{node.lineno} imports cv2.{a.name} (alignment maths; use maskgen.align)"
                         for a in node.names if a.name in ALIGNMENT_CALLS]
        bounds = None
        if isinstance(node, ast.Slice):
            bounds = (_int(node.lower) if node.lower is not None else 0, _int(node.upper))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) \
                in ("slice", "range", "arange") and len(node.args) >= 2:
            bounds = (_int(node.args[0]), _int(node.args[1]))
        if bounds in LANDMARK_RANGES:
            problems.append(f"{module}:{node.lineno} uses landmark range {bounds[0]}:{bounds[1]} "
                            "(import maskgen.face_points' named ranges)")
        if isinstance(node, ast.Attribute) and node.attr in ALIGNMENT_CALLS:
            problems.append(f"{module}:{node.lineno} does alignment maths ({node.attr}; use maskgen.align)")
    return problems


def package_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_packages_are_found():
    names = {module_name(p) for p in package_files()}
    assert {"maskgen.format", "unmask.models", "unmask.metrics"} <= names
    assert len(names) > 40


@pytest.mark.parametrize("path", package_files(), ids=lambda p: module_name(p))
def test_imports_follow_the_layers(path):
    problems = import_violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", [p for p in package_files() if module_name(p).startswith("unmask")],
                         ids=lambda p: module_name(p))
def test_face_geometry_lives_in_maskgen(path):
    problems = geometry_violations(path.read_text(), module_name(path))
    assert not problems, "\n".join(problems)


def test_the_checks_catch_violations():
    """The rules above would fail on code that breaks them (function-level and relative imports too)."""
    assert import_violations("def f():\n    import unmask.data\n", "maskgen.mask")
    assert import_violations("from ..training import loop\n", "unmask.models.mseg")
    assert import_violations("from .. import checkpoint\n", "unmask.models.funet")
    assert import_violations("from unmask.losses import ssim\n", "unmask.metrics.fidelity")
    assert not import_violations("from ..losses import ssim\n", "unmask.training.loop")
    assert not import_violations("from maskgen.align import paste_back\n", "unmask.predict")
    assert geometry_violations("eyes = points[36:48]\n", "unmask.x")
    assert geometry_violations("JAW = slice(0, 17)\n", "unmask.x")
    assert geometry_violations("eyes = points[list(range(36, 48))]\n", "unmask.x")
    assert geometry_violations("mouth = points[np.arange(48, 68)]\n", "unmask.x")
    assert geometry_violations("m = cv2.invertAffineTransform(a)\n", "unmask.x")
    assert geometry_violations("def _five_points(points):\n    return points\n", "unmask.x")
    assert geometry_violations("MIN_EYE_DISTANCE = 8.0\n", "unmask.x")
    assert geometry_violations("_LEFT_EYE, _RIGHT_EYE = a, b\n", "unmask.x")
    assert geometry_violations("from cv2 import warpAffine as w\n", "unmask.x")
    assert import_violations("import importlib\nm = importlib.import_module('unmask.training.loop')\n",
                             "unmask.models.funet")
    assert import_violations("def f():\n    import unmask.evaluation.samples as s\n", "unmask.metrics.fid")
    assert not geometry_violations("rgb = image[..., 0:3]\nhead = rows[:10]\n", "unmask.x")
    assert import_violations("from maskgen.compose import YAW_THRESHOLD\n", "unmask.evaluation.samples")
    assert import_violations("def f():\n    from maskgen.build import build\n", "unmask.cli")
    assert not import_violations("from maskgen.format import MAP\n", "unmask.data")
    assert not import_violations("from maskgen import format as fmt\n", "unmask.data")


def python_files() -> list[Path]:
    """Every Python file of the repository: the packages, tests, benchmarks, pipelines, scripts."""
    skipped = {".venv", "data", "site", ".git", ".dvc"}
    return sorted(p for p in ROOT.rglob("*.py") if not skipped & set(p.relative_to(ROOT).parts))


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_the_line_limit(path):
    lines = len(path.read_text().splitlines())
    name = path.relative_to(ROOT)
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES}): split it"


# ---------------------------------------------------------------------------------------------------------------
# No import cycles
# ---------------------------------------------------------------------------------------------------------------

def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, from ``{module: (source, is_package)}``.

    Every import counts wherever it is written (module level, inside a function, under TYPE_CHECKING).
    An edge goes to the module an import names: ``from pkg import sub`` to the submodule ``pkg.sub``
    when there is one, ``from pkg import NAME`` (and ``import pkg``) to the package ``pkg`` itself.
    The parent packages Python initialises on the way (``import a.b.c`` runs ``a/__init__`` and
    ``a/b/__init__``) are edges too, except the importer's own parents, which are already running:
    otherwise every package whose ``__init__`` imports its submodules would be a cycle with them. So
    ``pkg/__init__`` importing ``pkg.sub`` is a cycle only when ``pkg.sub`` (or what it imports) imports
    names from ``pkg`` itself, or reaches ``pkg`` through another package.
    """
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        package = module if is_package else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                prefix = imported_from(node, package)
                for alias in node.names:
                    targets.add(f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in sources else prefix)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) \
                    in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                targets.add(str(node.args[0].value))
        # importing a.b.c also runs a/b/__init__ (and a/__init__): an edge to each such package that is
        # not already running, i.e. not one of the importer's own parents
        own_parents = {module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1)}
        targets |= {t.rsplit(".", n)[0] for t in set(targets) for n in range(1, t.count(".") + 1)} - own_parents
        graph[module] = {t for t in targets if t in sources and t != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_import_cycles():
    sources = {module_name(p): (p.read_text(), p.name == "__init__.py") for p in package_files()}
    graph = import_graph(sources)
    cycles = import_cycles(graph)
    described = [" <-> ".join(cycle) + "\n    " + "; ".join(
        f"{m} -> {', '.join(sorted(graph[m] & set(cycle)))}" for m in cycle) for cycle in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_the_cycle_check_finds_cycles():
    sources = {
        "p": ("from .a import f\n", True),
        "p.a": ("def f():\n    from p import b\n", False),  # function-level: counts
        "p.b": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n", False),
        "q": ("from . import x\n", True),
        "q.x": ("import p.a\n", False),  # the parent package p is initialised, but is no edge
        "r": ("from .y import g\nG = 1\n", True),
        "r.y": ("from . import G\n", False),  # names from the package itself: r.y -> r
        "s": ("from .z import h\n", True),
        "s.z": ("import t.w\n", False),  # importing t.w runs t/__init__ too: s.z -> t
        "t": ("from s import z\n", True),
        "t.w": ("", False),
    }
    assert import_cycles(import_graph(sources)) == [["p.a", "p.b"], ["r", "r.y"], ["s", "s.z", "t"]]
