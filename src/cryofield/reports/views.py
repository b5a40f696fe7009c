"""Pictures of maps for pages: central slices, projections and a shaded isosurface, as arrays and PNGs.

Everything here works on ``[z, y, x]`` volumes (origin at ``D//2``, DESIGN.md) with numpy and
scipy only. Images are returned ``[row, column]`` ready to show, with ``y`` (or ``z``) pointing
up: row 0 is the top of the picture, so the arrays are flipped upside down with respect to
the volume's index order.
"""

from __future__ import annotations

import base64
import io

import numpy as np

#: The three axes of a ``[z, y, x]`` volume, and what a picture along each shows (vertical, horizontal).
AXES = (("z", "y", "x"), ("y", "z", "x"), ("x", "z", "y"))


def bin_volume(volume: np.ndarray, max_size: int = 128) -> np.ndarray:
    """Shrink a volume by block averaging until no side exceeds ``max_size``.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx)
    max_size : int
        Largest side kept, voxels.

    Returns
    -------
    ndarray, shape (nz // f, ny // f, nx // f), float32
        ``f = ceil(max(shape) / max_size)``; the volume itself (as float32) when ``f == 1``.
        Trailing voxels that do not fill a block are dropped.
    """
    volume = np.asarray(volume, np.float32)
    factor = int(np.ceil(max(volume.shape) / max_size))
    if factor <= 1:
        return volume
    nz, ny, nx = (s // factor for s in volume.shape)
    blocks = volume[:nz * factor, :ny * factor, :nx * factor].reshape(nz, factor, ny, factor, nx, factor)
    return blocks.mean(axis=(1, 3, 5))


def isosurface_mesh(volume: np.ndarray, level: float, max_size: int = 96,
                    apix: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The surface of a map at ``level`` as triangles (marching cubes), for 3-D viewers.

    Parameters
    ----------
    volume : ndarray, shape (D, D, D)
        ``[z, y, x]``.
    level : float
        Iso-level, the map's units.
    max_size : int
        The map is block-averaged to at most this many voxels a side first (:func:`bin_volume`).
    apix : float
        Voxel size of ``volume``, A.

    Returns
    -------
    vertices : ndarray, shape (V, 3), float32
        ``x, y, z`` in A from the box's corner (voxel centres at ``(i + 0.5 f - 0.5) apix`` for a
        binning factor ``f``, the original voxels' frame).
    faces : ndarray, shape (F, 3), int32
        Vertex indices of each triangle; both empty when the level is outside the map's range.
    """
    from skimage.measure import marching_cubes

    small = bin_volume(volume, max_size)
    factor = volume.shape[0] / small.shape[0]
    if not small.min() < level < small.max():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    vertices, faces, _, _ = marching_cubes(small, level)
    # marching cubes gives the array's (z, y, x): reversed to x, y, z, and a bin's centre placed in the original voxels
    xyz = (vertices[:, ::-1] * factor + 0.5 * (factor - 1)) * apix
    return xyz.astype(np.float32), faces.astype(np.int32)


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three central sections of a volume.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx)

    Returns
    -------
    list of ndarray
        The sections through the origin (index ``n // 2``) normal to z, y and x: shapes
        (ny, nx), (nz, nx), (nz, ny), each flipped so that its first axis points up.
    """
    volume = np.asarray(volume)
    nz, ny, nx = volume.shape
    return [volume[nz // 2][::-1], volume[:, ny // 2][::-1], volume[:, :, nx // 2][::-1]]


def projections(volume: np.ndarray) -> list[np.ndarray]:
    """The sums of a volume along z, y and x.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx)

    Returns
    -------
    list of ndarray
        Shapes (ny, nx), (nz, nx), (nz, ny), in the volume's units times voxels, each flipped
        so that its first axis points up.
    """
    volume = np.asarray(volume, np.float64)
    return [volume.sum(axis)[::-1] for axis in range(3)]


def view_rotation(tilt_deg: float = 25.0, azimuth_deg: float = 35.0) -> np.ndarray:
    """The rotation (3, 3) of :func:`render_isosurface`'s default view, acting on ``(x, y, z)``.

    A turn of ``azimuth_deg`` about y, then a tilt of ``tilt_deg`` about x: the viewer looks
    down the rotated frame's z axis onto the ``x``-``y`` plane.
    """
    a, t = np.deg2rad(azimuth_deg), np.deg2rad(tilt_deg)
    about_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return about_x @ about_y


def render_isosurface(volume: np.ndarray, threshold: float, rotation: np.ndarray | None = None,
                      colour: tuple[float, float, float] = (0.55, 0.72, 0.95), background: float = 1.0) -> np.ndarray:
    """A shaded depth map of the region of a volume above ``threshold``, seen from one side.

    The volume is rotated by ``rotation`` (linear interpolation, about the origin ``D//2``);
    along each line of sight the first crossing of ``threshold`` (to a fraction of a voxel)
    gives a height map, whose gradient gives the surface normal for Lambert shading with a
    light above the viewer's left shoulder, and a mild depth cue. Pixels that miss the surface
    have the grey level ``background``.

    Parameters
    ----------
    volume : ndarray, shape (D, D, D)
        ``[z, y, x]``, any units.
    threshold : float
        Iso-level, in the volume's units.
    rotation : ndarray, shape (3, 3), optional
        Acting on ``(x, y, z)`` column vectors (default :func:`view_rotation`).
    colour : tuple of 3 float
        RGB in [0, 1] of a surface facing the light.
    background : float
        Grey level in [0, 1] where the line of sight misses the surface (1 is white).

    Returns
    -------
    ndarray, shape (D, D, 3), float64
        RGB in [0, 1]; rows run top to bottom (rotated y up), columns left to right (rotated x).
    """
    from scipy.ndimage import map_coordinates

    volume = np.asarray(volume, np.float32)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"a cubic volume is needed, got {volume.shape}")
    d = volume.shape[0]
    rotation = view_rotation() if rotation is None else np.asarray(rotation, float)
    grid = np.arange(d) - d // 2
    # view frame (depth k, row i, column j) -> (x', y', z') = (j, i, k) -> volume (x, y, z) = R^T (x', y', z')
    zv, yv, xv = np.meshgrid(grid, grid, grid, indexing="ij")
    view = np.stack([xv.ravel(), yv.ravel(), zv.ravel()])
    x, y, z = rotation.T @ view + d // 2
    floor = float(min(volume.min(), threshold)) - 1.0  # everything outside the box is below the level
    sampled = map_coordinates(volume, [z, y, x], order=1, mode="constant", cval=floor).reshape(d, d, d)
    ray = sampled[::-1]  # the viewer sits at +z' and looks down
    above = ray > threshold
    hit = above.any(0)
    first = above.argmax(0)
    rows, cols = np.indices(first.shape)
    before = ray[np.maximum(first - 1, 0), rows, cols]
    at = ray[first, rows, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where((first > 0) & (at > before), (threshold - before) / (at - before), 1.0)
    depth = first - 1 + np.clip(fraction, 0, 1)  # voxels from the front of the box
    height = np.where(hit, d - depth, 0.0)
    gy, gx = np.gradient(height)
    normal = np.stack([-gx, -gy, np.ones_like(height)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array([-0.45, 0.55, 1.0])  # left, up (rows grow with y here), towards the viewer
    light /= np.linalg.norm(light)
    lambert = np.clip(np.tensordot(light, normal, axes=1), 0, 1)
    shade = (0.22 + 0.78 * lambert) * (0.65 + 0.35 * height / d)
    rgb = np.where(hit[..., None], shade[..., None] * np.asarray(colour), background)
    return rgb[::-1]  # y up


def scale_to_unit(image: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5) -> np.ndarray:
    """An image mapped to [0, 1] between two of its percentiles (clipped); a flat image gives 0.5.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    low_percentile, high_percentile : float
        Percentiles mapped to 0 and 1.

    Returns
    -------
    ndarray, shape (H, W), float64
    """
    image = np.asarray(image, np.float64)
    low, high = np.percentile(image, [low_percentile, high_percentile])
    if not high > low:
        return np.full(image.shape, 0.5)
    return np.clip((image - low) / (high - low), 0, 1)


def map_panels(volume: np.ndarray, threshold: float, max_size: int = 128) -> list[np.ndarray]:
    """The seven pictures of a map: three central slices, three projections and the isosurface.

    Parameters
    ----------
    volume : ndarray, shape (D, D, D)
        ``[z, y, x]``; block-averaged to at most ``max_size`` voxels a side first.
    threshold : float
        Iso-level of the surface, in the volume's units.
    max_size : int

    Returns
    -------
    list of ndarray
        Six grey images (h, w) in [0, 1] (slices normal to z, y, x, each scaled between its 0.5th
        and 99.5th percentiles; sums along z, y, x, each scaled between its minimum and maximum),
        then the isosurface, RGB (h, w, 3) on a light grey background.
    """
    small = bin_volume(volume, max_size)
    grey = [scale_to_unit(s) for s in central_slices(small)] + [scale_to_unit(p, 0, 100) for p in projections(small)]
    return grey + [render_isosurface(small, threshold, background=0.94)]


def mosaic(images: list[np.ndarray], gap: int = 2, background: float = 1.0) -> np.ndarray:
    """Images side by side (tops aligned) with ``gap`` pixels between them.

    Parameters
    ----------
    images : list of ndarray
        Grey (h, w) or RGB (h, w, 3), values in [0, 1].
    gap : int
    background : float

    Returns
    -------
    ndarray, shape (max h, sum w + gaps, 3)
    """
    rgb = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
    height = max(im.shape[0] for im in rgb)
    width = sum(im.shape[1] for im in rgb) + gap * (len(rgb) - 1)
    out = np.full((height, width, 3), background)
    x = 0
    for im in rgb:
        out[:im.shape[0], x:x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


def png_data_uri(image: np.ndarray, upscale: int = 1) -> str:
    """A ``data:image/png;base64,...`` URI of an image.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Values in [0, 1].
    upscale : int
        Repeat each pixel this many times along both axes (crisp small maps).

    Returns
    -------
    str
    """
    from matplotlib.image import imsave

    image = np.clip(np.asarray(image, np.float64), 0, 1)
    if upscale > 1:
        image = image.repeat(upscale, axis=0).repeat(upscale, axis=1)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    buffer = io.BytesIO()
    imsave(buffer, (image * 255).round().astype(np.uint8), format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
