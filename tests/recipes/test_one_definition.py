"""Each fact about an image has one definition: label names, in-image paths, the package manager's commands, the step
environment and the Jinja environment; the templates place what Python hands them."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from source_scan import docstring_ids

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.recipes import render
from hpcai_tf.recipes.derived import render_derived
from hpcai_tf.recipes.package_managers import APT, DNF, package_manager
from hpcai_tf.recipes.render import render_steps, step_env
from hpcai_tf.train.image_contract import IMAGE_PATHS

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "hpcai_tf"
TEMPLATES = REPO / "containers" / "templates"


def string_literals(path: Path) -> list[str]:
    """Every string constant of a module that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = docstring_ids(tree) | {  # attribute docstrings: a string statement right after an assignment
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def modules_with(text: str) -> list[str]:
    """The package's modules with a string literal (not a docstring) that holds ``text``."""
    return sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(text in value for value in string_literals(path))
    )


def templates_with(text: str) -> list[str]:
    return sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2") if text in p.read_text())


def test_label_names_are_defined_once():
    """``org.hpcai.*`` is spelled in recipes/image_labels.py alone; the templates get the labels as data."""
    assert modules_with("org.hpcai.") == ["recipes/image_labels.py"]
    assert templates_with("org.hpcai.") == []
    assert "org.hpcai." not in (REPO / "docs" / "templates" / "site.md.j2").read_text()


def test_in_image_paths_are_defined_once():
    """``/opt/hpcai`` is spelled in train/image_contract.py alone; the templates read ``paths``."""
    assert modules_with("/opt/hpcai") == ["train/image_contract.py"]
    assert templates_with("/opt/hpcai") == []


def test_build_context_paths_are_defined_once():
    """Where a build context holds its inputs (``build/options``, ``build/wheels``) is spelled in
    train/image_contract.py alone: the context's stager and the recipes' COPY lines read ``CONTEXT_PATHS``."""
    for where in ("build/options", "build/wheels"):
        assert modules_with(where) == ["train/image_contract.py"], where
        assert templates_with(f"{where} ") == [], where  # a COPY or %files source, not a comment
        assert templates_with(f'"{where}"') == [], where


def test_the_staged_context_holds_what_the_recipe_copies(tmp_path):
    """Every source the local recipe copies from its context exists in the context ``hpcai build`` stages."""
    from hpcai_tf.image.context import BuildOptions, stage_context
    from hpcai_tf.recipes.build_inputs import build_inputs

    site = load_site("local")
    staged = stage_context(build_inputs(site), BuildOptions(wheels_dir=None), dest=tmp_path / "ctx")
    dockerfile = (staged.path / "recipe" / "Dockerfile").read_text()
    sources = [line.split()[1].rstrip("/") for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert sources, dockerfile
    for source in sources:
        assert (staged.path / source).is_dir(), source


def test_the_provenance_variable_is_defined_once():
    assert modules_with("HPCAI_PROVENANCE") == ["train/image_contract.py"]
    assert templates_with("HPCAI_PROVENANCE") == []


def test_one_jinja_environment_factory():
    """Every template (recipes, job scripts, site pages) renders through recipes.render.jinja_environment."""
    made_here = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "jinja2.Environment(" in path.read_text()
    )
    assert made_here == ["recipes/render.py"]


def test_package_manager_commands_per_family():
    """apt runs non-interactive, updates its index and removes it after; dnf installs without weak dependencies."""
    assert APT.install_commands(["less", "vim"]) == [
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get update",
        "apt-get install -y --no-install-recommends less vim",
        "rm -rf /var/lib/apt/lists/*",
    ]
    assert APT.install_commands(["libnccl2"], change_held=True)[2] == (
        "apt-get install -y --no-install-recommends --allow-change-held-packages libnccl2"
    )
    assert DNF.install_commands(["vim-minimal"], change_held=True) == [
        "dnf install -y --setopt=install_weak_deps=False vim-minimal",
        "dnf clean all",
    ]
    assert package_manager(load_site("local")) is APT and package_manager(load_site("summit")) is DNF


def test_a_derived_image_installs_system_packages_as_its_base_does():
    """The derived recipes take the base's package-manager commands: on apt, non-interactive too (a change: they ran
    ``apt-get update`` without ``DEBIAN_FRONTEND=noninteractive``, which lets a package's debconf prompt stop a build)."""
    site = load_site("local")
    base = render_steps(site)[0].commands
    files = render_derived(site, "x", ["six==1.17.0"], ["less"])
    assert base[:2] == ["export DEBIAN_FRONTEND=noninteractive", "apt-get update"]
    assert (
        "RUN export DEBIAN_FRONTEND=noninteractive \\\n && apt-get update \\\n"
        " && apt-get install -y --no-install-recommends less \\\n && rm -rf /var/lib/apt/lists/*\n"
    ) in files["Dockerfile"]
    assert "    export DEBIAN_FRONTEND=noninteractive\n    apt-get update\n" in files["Singularity.def"]


def test_the_step_environment_is_pythons():
    """PATH, the venv and the site and provenance variables come from step_env; the format templates place them."""
    site = load_site("local")
    assert {step.name: step.env for step in render_steps(site) if step.env} == {
        "python-pip": {
            "PATH": "/opt/hpcai/venv/bin:$PATH",
            "VIRTUAL_ENV": "/opt/hpcai/venv",
            "TF_USE_LEGACY_KERAS": "1",
        },
        "kit": {"HPCAI_SITE": "local", "HPCAI_PROVENANCE": IMAGE_PATHS.provenance},
    }
    assert step_env(load_site("summit"), "python-conda") == {
        "PATH": "/opt/hpcai/venv/bin:$PATH",
        "CONDA_PREFIX": "/opt/hpcai/venv",
    }


def test_a_step_template_that_sets_its_environment_is_refused(tmp_path, monkeypatch):
    """A template that sets ``env`` again would be ignored; it is a one-line error instead."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    kit = templates / "steps" / "kit.sh.j2"
    kit.write_text('{%- set env = {"HPCAI_SITE": site.id} -%}\n' + kit.read_text())
    monkeypatch.setattr(render, "TEMPLATES_DIR", templates)
    with pytest.raises(KitError, match=r"^containers/templates/steps/kit\.sh\.j2: sets env; .*step_env"):
        render_steps(load_site("local"))


def test_cudnn_packages_come_from_data():
    """cuDNN's apt packages are named by its major release; one the kit has no names for is refused at render."""
    site = load_site("bridges-ai")
    assert render.cuda_packages(site)[:2] == ["libcudnn8=8.6.0.163-1+cuda11.8", "libcudnn8-dev=8.6.0.163-1+cuda11.8"]
    newer = site.model_copy(update={"stack": site.stack.model_copy(update={"cudnn": "9.1.0"})})
    with pytest.raises(KitError, match=r"^site bridges-ai: stack\.cudnn: 9\.1\.0: .*cuDNN 8 only"):
        render_steps(newer)
