"""Spiral and elliptical galaxy images rendered with GalSim, in the style of DES colour cutouts.

- Ellipticals: a Sersic profile (n in [3, 5.5], de Vaucouleurs at n = 4), red, axis ratio 0.55-1.
- Spirals: a small de Vaucouleurs bulge (red), an exponential disk, logarithmic spiral arms (2-4 arms, pitch
  10-30 degrees) drawn by the kit on a fine grid and handed to GalSim as an ``InterpolatedImage``, and blue
  star-forming knots (``galsim.RandomKnots``); inclined (axis ratio 0.3-1) and rotated.
- Both: convolved with a Moffat PSF (beta 3, FWHM from the configured seeing range), drawn at the DES pixel
  scale (0.263"/pixel) in g, r, i, with Gaussian sky noise, then mapped to an 8-bit RGB image (R = i, G = r, B
  = g) with an asinh stretch, like survey colour cutouts.

Sizes scale with the stamp: the half-light radius is 6-14 % of the stamp width, so a 64-pixel and a 224-pixel
stamp show the same kind of galaxy at different resolution.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

CLASS_NAMES = ("elliptical", "spiral")
BANDS = ("g", "r", "i")
# Relative flux in g, r, i of each component (redder bulges and ellipticals, bluer arms and knots).
COLOURS = {
    "elliptical": (0.45, 0.8, 1.0),
    "bulge": (0.5, 0.85, 1.0),
    "disk": (0.75, 0.9, 0.95),
    "arms": (1.0, 0.9, 0.75),
    "knots": (1.0, 0.8, 0.6),
}


@dataclass(frozen=True)
class GalaxySpec:
    """How images are rendered; stored in ``dataset.json``."""

    image_size: int = 224
    pixel_scale_arcsec: float = 0.263
    psf_fwhm_min: float = 0.8
    psf_fwhm_max: float = 1.2
    sky_noise: float = 0.01
    seed: int = 1234

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _arm_pattern(rng: np.random.Generator, hlr: float, scale: float, size: int) -> np.ndarray:
    """A face-on disk with logarithmic spiral arms on a grid of ``size`` pixels of ``scale`` arcsec."""
    arms = int(rng.integers(2, 5))
    pitch = np.deg2rad(rng.uniform(10.0, 30.0))
    phase = rng.uniform(0.0, 2.0 * np.pi)
    sharpness = rng.uniform(2.0, 6.0)
    coords = (np.arange(size) - (size - 1) / 2.0) * scale
    x, y = np.meshgrid(coords, coords)
    r = np.hypot(x, y) + 1e-3 * scale
    theta = np.arctan2(y, x)
    scale_length = hlr / 1.678
    spiral = np.cos(arms * (theta - np.log(r / scale_length) / np.tan(pitch)) - phase)
    envelope = np.exp(-r / scale_length) * (1.0 - np.exp(-((r / (0.6 * scale_length)) ** 2)))
    return envelope * ((1.0 + spiral) / 2.0) ** sharpness


def _components(label: int, rng: np.random.Generator, spec: GalaxySpec, seed: int):
    """(GalSim profile, colour) pairs of one galaxy, before PSF, inclination and rotation applied."""
    import galsim

    width = spec.image_size * spec.pixel_scale_arcsec
    hlr = rng.uniform(0.06, 0.14) * width
    if CLASS_NAMES[label] == "elliptical":
        sersic = galsim.Sersic(n=rng.uniform(3.0, 5.5), half_light_radius=hlr)
        axis_ratio = rng.uniform(0.55, 1.0)
        return [(sersic, COLOURS["elliptical"])], axis_ratio
    fine = spec.pixel_scale_arcsec / 2.0
    grid = int(np.ceil(8.0 * hlr / fine)) | 1
    pattern = _arm_pattern(rng, hlr, fine, grid)
    arms = galsim.InterpolatedImage(galsim.Image(pattern, scale=fine), flux=1.0)
    fractions = rng.dirichlet([2.0, 3.0, 4.0, 1.0])  # bulge, disk, arms, knots
    parts = [
        (
            galsim.DeVaucouleurs(half_light_radius=rng.uniform(0.15, 0.3) * hlr, flux=fractions[0]),
            COLOURS["bulge"],
        ),
        (galsim.Exponential(half_light_radius=hlr, flux=fractions[1]), COLOURS["disk"]),
        (arms.withFlux(fractions[2]), COLOURS["arms"]),
        (
            galsim.RandomKnots(
                npoints=int(rng.integers(15, 60)),
                half_light_radius=hlr,
                flux=fractions[3],
                rng=galsim.BaseDeviate(seed),
            ),
            COLOURS["knots"],
        ),
    ]
    return parts, rng.uniform(0.3, 1.0)


def render_galaxy(index: int, spec: GalaxySpec) -> tuple[np.ndarray, int]:
    """(uint8 RGB image, label) of galaxy number ``index``; the same index and spec give the same image."""
    import galsim

    rng = np.random.default_rng([spec.seed, 2, index])
    label = index % 2
    parts, axis_ratio = _components(label, rng, spec, seed=int(rng.integers(1, 2**31)))
    angle = rng.uniform(0.0, 180.0) * galsim.degrees
    psf = galsim.Moffat(beta=3.0, fwhm=rng.uniform(spec.psf_fwhm_min, spec.psf_fwhm_max))
    offset = rng.uniform(-1.0, 1.0, 2)
    bands = np.zeros((3, spec.image_size, spec.image_size))
    for profile, colour in parts:
        profile = profile.shear(q=axis_ratio, beta=angle)
        image = galsim.Convolve(profile, psf).drawImage(
            nx=spec.image_size, ny=spec.image_size, scale=spec.pixel_scale_arcsec, offset=offset
        )
        bands += np.asarray(colour)[:, None, None] * image.array[None]
    peak = bands.max()
    bands /= peak
    bands += rng.normal(0.0, spec.sky_noise, bands.shape)
    softening = 0.05
    stretched = np.arcsinh(np.clip(bands, 0.0, None) / softening) / np.arcsinh(1.0 / softening)
    rgb = np.clip(stretched[::-1].transpose(1, 2, 0) * 255.0, 0, 255).astype(np.uint8)  # R = i, B = g
    return rgb, label


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG encoding of an RGB uint8 image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()
