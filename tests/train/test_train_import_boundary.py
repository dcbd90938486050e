"""The training package runs inside images: it imports nothing from the host side of the kit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "hpcai_tf" / "train"
ALLOWED = ("hpcai_tf.train", "hpcai_tf.errors")


def _kit_imports(path: Path) -> list[str]:
    """Every hpcai_tf module (or ``hpcai_tf:name``) that ``path`` imports, at any depth."""
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


def test_train_imports_only_itself_errors_and_version():
    modules = sorted(TRAIN.rglob("*.py"))
    assert len(modules) > 20
    offending = {}
    for path in modules:
        bad = [
            name
            for name in _kit_imports(path)
            if name != "hpcai_tf:__version__" and not any(name == a or name.startswith(f"{a}.") for a in ALLOWED)
        ]
        if bad:
            offending[str(path.relative_to(TRAIN))] = bad
    assert offending == {}


def test_the_check_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from hpcai_tf.catalog import load\n    import hpcai_tf.launch.slurm\n")
    assert _kit_imports(sample) == ["hpcai_tf.catalog", "hpcai_tf.launch.slurm"]


def test_command_module_imports_no_tensorflow():
    code = "import sys, hpcai_tf.commands.train, hpcai_tf.train.loop; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
