"""The package is laid out as the pipeline: each step's subpackage imports only the steps before it.

``commands/`` is the one layer that combines the others; ``train/`` runs inside images and has its own check in
``tests/train/test_train_import_boundary.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpcai_tf"
SHARED = ("hpcai_tf.catalog", "hpcai_tf.errors", "hpcai_tf.files", "hpcai_tf.paths", "hpcai_tf:__version__")
# train/ modules that run on the host as well as in images, pure Python without TensorFlow: the one mpirun command
# line (its --oversubscribe rule) and the preempted run's exit status.
MPIRUN_LINE = "=hpcai_tf.train.mpirun_line"
PREEMPTED_STATUS = "=hpcai_tf.train.signals"
IMAGE_CONTRACT = "=hpcai_tf.train.image_contract"
"""What an image holds and where (its stack's packages, paths, variables): pure data in train/, which runs inside
images and reads it there; the host steps that write or read images may import exactly this module of train/."""
TRAIN_FLAGS = "=hpcai_tf.train.options"
"""The declaration of every ``hpcai train`` flag (pure Python), from which the docs generate the flag table."""
IMAGE_LABELS = "=hpcai_tf.recipes.image_labels"
"""The names of the kit's image labels: pure constants, which the report reads back from a run's provenance."""
ALLOWED = {
    "recipes": (*SHARED, "hpcai_tf.recipes", IMAGE_CONTRACT),
    "image": (*SHARED, "hpcai_tf.recipes", "hpcai_tf.image", MPIRUN_LINE, IMAGE_CONTRACT),
    # From train/ the package itself (the names of the workloads, WORKLOADS) and the three pure modules above.
    "launch": (
        *SHARED,
        "hpcai_tf.recipes.render",
        "hpcai_tf.launch",
        "=hpcai_tf.train",
        MPIRUN_LINE,
        PREEMPTED_STATUS,
        IMAGE_CONTRACT,  # the site variable a host job exports
    ),
    "scaling": (*SHARED, "hpcai_tf.scaling", "hpcai_tf.train", IMAGE_LABELS),
    "sitedocs": (
        *SHARED,
        "hpcai_tf.recipes",
        "hpcai_tf.image",
        "hpcai_tf.launch",
        "hpcai_tf.sitedocs",
        IMAGE_CONTRACT,
        TRAIN_FLAGS,
    ),
}
TOP_LEVEL = {"__init__", "__main__", "cli", "catalog", "errors", "files", "paths"}
SHARED_ALLOWED = ("hpcai_tf.errors", "hpcai_tf.files", "hpcai_tf.paths")


def kit_imports(path: Path) -> list[str]:
    """Every hpcai_tf module (or ``hpcai_tf:name``) that ``path`` imports, at any depth (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("hpcai_tf")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpcai_tf"):
            if node.module == "hpcai_tf":
                found += [f"hpcai_tf:{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def allowed(name: str, rules: tuple[str, ...]) -> bool:
    """``name`` is one of ``rules`` or below one; a rule ``=X`` allows exactly X."""
    for rule in rules:
        if rule.startswith("="):
            if name == rule[1:]:
                return True
        elif name == rule or name.startswith(f"{rule}."):
            return True
    return False


def offending(directory: Path, rules: tuple[str, ...], base: Path = PACKAGE) -> dict[str, list[str]]:
    """Module (relative to ``base``) -> the imports of it that ``rules`` do not allow."""
    bad = {}
    for path in sorted(directory.rglob("*.py")):
        names = [name for name in kit_imports(path) if not allowed(name, rules)]
        if names:
            bad[path.relative_to(base).as_posix()] = names
    return bad


@pytest.mark.parametrize("step", sorted(ALLOWED))
def test_each_step_imports_only_what_comes_before_it(step):
    directory = PACKAGE / step
    assert len(list(directory.glob("*.py"))) >= 3
    assert offending(directory, ALLOWED[step]) == {}


def test_shared_modules_import_only_each_other():
    for name in ("catalog", "errors", "files", "paths"):
        path = PACKAGE / f"{name}.py"
        assert [n for n in kit_imports(path) if not allowed(n, SHARED_ALLOWED)] == [], name


def test_the_top_level_holds_only_the_shared_modules():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == TOP_LEVEL
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"commands", "recipes", "image", "launch", "scaling", "sitedocs", "train"}


def test_the_check_sees_a_forbidden_import(tmp_path):
    """An import of a later step, inside a function too, is reported; the exact-package rule allows no submodule."""
    step = tmp_path / "step"
    step.mkdir()
    (step / "a.py").write_text("def f():\n    from hpcai_tf.launch.submit import submit_job_script\n")
    (step / "b.py").write_text("import hpcai_tf.train.loop\nfrom hpcai_tf.train import WORKLOADS\n")
    assert offending(step, ALLOWED["recipes"], base=tmp_path) == {
        "step/a.py": ["hpcai_tf.launch.submit"],
        "step/b.py": ["hpcai_tf.train.loop", "hpcai_tf.train"],
    }
    assert offending(step, ALLOWED["launch"], base=tmp_path) == {"step/b.py": ["hpcai_tf.train.loop"]}


@pytest.mark.parametrize("module", ["hpcai_tf.train.mpirun_line", "hpcai_tf.train.signals"])
def test_the_train_modules_of_the_host_import_no_tensorflow_and_no_other_kit_module(module):
    """What launch/ and image/ may import of train/ stays pure: no TensorFlow, NumPy or Horovod, nothing of train/."""
    path = PACKAGE / "train" / f"{module.rsplit('.', 1)[1]}.py"
    assert kit_imports(path) == []
    code = f"import sys, {module}; print(sorted({{'tensorflow', 'numpy', 'horovod'}} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_image_contract_imports_nothing():
    """The one module of train/ the host steps may import is pure data: it imports no other module at all."""
    tree = ast.parse((PACKAGE / "train" / "image_contract.py").read_text())
    imported = [
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert set(imported) <= {"__future__", "dataclasses"}
