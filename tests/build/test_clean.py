"""``hpcai clean`` removes the kit's images and build directories, and nothing else. Runs last in the session."""

from __future__ import annotations

import io
import tarfile

import pytest


def _tiny_image(client, repo: str, tag: str) -> None:
    """Import a one-file image that has nothing to do with the kit."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    client.api.import_image_from_data(data.getvalue(), repository=repo, tag=tag)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.removes_kit_images
@pytest.mark.timeout(900)
def test_clean_removes_the_kit_images_and_dirs_and_nothing_else(
    cli, docker_engine, local_image, base_image, kit_root, tmp_path
):
    """Kit images (site, recipe builds, base) and build/ dirs go; other images, even FROM the kit's, stay."""
    if not docker_engine.private:
        pytest.skip("hpcai clean removes every kit image: run only on the session's own private dockerd")
    client = docker_engine.client()
    recipe = tmp_path / "derived"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text(f"FROM {local_image.tag}\nRUN echo derived > /derived.txt\n")
    built = cli("build", "--recipe", str(recipe), timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr
    recipe_tag = built.stdout.strip().splitlines()[-1].split()[1]
    _tiny_image(client, "someone/else", "1")
    client.api.tag(base_image, "someone/base-copy", "1")  # the base under a name the kit does not give
    assert (kit_root / "build" / "logs").is_dir() and (kit_root / "build" / "context" / "local").is_dir()

    dry = cli("clean", "--dry-run", timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove image {local_image.tag}" in dry.stdout
    assert client.images.get(local_image.tag)  # a dry run removes nothing

    result = cli("clean", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "untagged hpcai/debian:bookworm-minbase (the image stays as someone/base-copy:1)" in result.stdout
    tags = {tag for image in client.images.list(all=True) for tag in image.tags}
    assert local_image.tag not in tags and recipe_tag not in tags and base_image not in tags
    assert {"someone/else:1", "someone/base-copy:1"} <= tags
    assert not (kit_root / "build").exists()
    leftover = [i for i in client.images.list(all=True) if (i.labels or {}).get("org.hpcai.site")]
    assert leftover == []  # no cache layer of a site build is left
