"""CIFAR-10-C: read the official files, or regenerate them as Hendrycks & Dietterich's CIFAR generator does.

Each corruption is a function (x_u8, severity, rngs) -> values on the generator's 0..255 scale, vectorized over a
batch of uint8 images (N, 32, 32, 3); `corrupt` truncates them with np.uint8, as the generator's script does.
"Matches the generator" means the algorithm, not only its constants: every step is the generator's (its
libraries' semantics: skimage's Gaussian, OpenCV's filter2D/warpAffine borders, scipy's zoom and
map_coordinates modes, PIL's box resize and JPEG, ImageMagick's motion blur returning rounded 8-bit images:
CIFAR-10-C was made before ImageMagick 6.9.10-69 (2019), which since floors 8-bit output; the project rounds,
as the ImageMagick of the published files did, so against a current ImageMagick motion_blur and snow differ by
1-2 grey levels on part of the pixels while every deterministic corruption matches within one),
computed in the generator's precision (float64, float32 where it casts). bench/corruptions/reference.py writes
each corruption plainly, per image, with those libraries; tests/test_corruption_fidelity.py checks that the two
agree within one grey level on real images for all 75 sets.

Randomness: image k of a set draws from its own generator, seeded by (seed, corruption, severity, k), so an
image's corruption does not depend on the other images of the batch (the first n images of a regenerated set
are the same whatever n), and both paths take exactly the same draws. The official files came from numpy's
global RNG: regenerated sets are statistically like them, not identical, and rows label them `regenerated`.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

CORRUPTIONS: dict = {}
SEVERITIES = (1, 2, 3, 4, 5)
# bumped whenever regenerated images change: part of every corruption row's cache key and of the cache file names
GENERATOR_VERSION = 2
PARAMS = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}


def register(name):
    def deco(fn):
        CORRUPTIONS[name] = fn
        return fn
    return deco


def image_rngs(n: int, name: str, severity: int, seed: int = 0) -> list:
    """One numpy generator per image, seeded by (seed, corruption, severity, index)."""
    return [np.random.default_rng([seed, zlib.crc32(name.encode()), severity, k]) for k in range(n)]


def _gauss(x, sigma, mode="nearest", truncate=4.0):
    """skimage.filters.gaussian over (N, H, W[, C]) batches: spatial only, never across images or channels."""
    if sigma <= 0:
        return x
    s = (0, sigma, sigma) + ((0,) if x.ndim == 4 else ())
    return ndimage.gaussian_filter(x, s, mode=mode, truncate=truncate)


def _clipped_zoom(x, zoom):
    """The generator's clipped_zoom (scipy.ndimage.zoom, order 1) for (N, H, W, C): centre crop of ceil(h/zoom),
    zoomed back, trimmed to h. Bilinear with corners mapped to corners is scipy's order-1 zoom."""
    h = x.shape[1]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    size = int(round(ch * zoom))  # scipy.ndimage.zoom's output size
    crop = torch.from_numpy(np.ascontiguousarray(x[:, top:top + ch, top:top + ch])).permute(0, 3, 1, 2)
    out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=True).permute(0, 2, 3, 1).numpy()
    t = (out.shape[1] - h) // 2
    return out[:, t:t + h, t:t + h]


def _shift_gather(x, dy, dx):
    """out[n, i, j] = x[n, clip(i - dy[n]), clip(j - dx[n])]: an integer shift with edge replication."""
    n, h, w = x.shape[:3]
    rows = np.clip(np.arange(h)[None, :] - dy[:, None], 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] - dx[:, None], 0, w - 1)
    return x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def motion_blur_u8(x255, radius, sigma, angles):
    """ImageMagick's motion blur as the generator gets it back: (N, H, W[, C]) on 0..255, one-sided Gaussian
    kernel of width 2*radius+1 along each image's angle, edges replicated, rounded to 8 bits."""
    width = radius * 2 + 1
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    py, px = width * np.sin(np.deg2rad(angles)), width * np.cos(np.deg2rad(angles))
    hyp = np.hypot(py, px)
    out = np.zeros(x255.shape, dtype=np.float64)
    for i in range(width):
        dy = -np.ceil(i * py / hyp - 0.5).astype(int)
        dx = -np.ceil(i * px / hyp - 0.5).astype(int)
        out += k[i] * _shift_gather(x255, dy, dx)
    return np.clip(np.round(out), 0, 255)


def _gray(x):
    """cv2.cvtColor(x, COLOR_RGB2GRAY) for float images: 0.299 R + 0.587 G + 0.114 B."""
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]


def _f64(x_u8):
    return x_u8 / 255.0  # the generator's np.array(x) / 255.


def _per_image(rngs, draw):
    return np.stack([draw(r) for r in rngs])


@register("gaussian_noise")
def gaussian_noise(x_u8, s, rngs):
    c = PARAMS["gaussian_noise"][s - 1]
    x = _f64(x_u8)
    return np.clip(x + _per_image(rngs, lambda r: r.normal(size=x.shape[1:], scale=c)), 0, 1) * 255


@register("shot_noise")
def shot_noise(x_u8, s, rngs):
    c = PARAMS["shot_noise"][s - 1]
    x = _f64(x_u8)
    return np.clip(np.stack([r.poisson(xi * c) for r, xi in zip(rngs, x)]) / c, 0, 1) * 255


@register("impulse_noise")
def impulse_noise(x_u8, s, rngs):
    c = PARAMS["impulse_noise"][s - 1]
    x = _f64(x_u8).copy()
    # skimage.util.random_noise(mode='s&p', amount=c): flipped ~ Bernoulli(c), then salted ~ Bernoulli(0.5)
    hit = _per_image(rngs, lambda r: np.stack([r.random(x.shape[1:]) <= c, r.random(x.shape[1:]) <= 0.5]))
    x[hit[:, 0] & hit[:, 1]] = 1.0
    x[hit[:, 0] & ~hit[:, 1]] = 0.0
    return np.clip(x, 0, 1) * 255


def _cv2_gaussian_kernel(ksize, sigma):
    k = np.exp(-(np.arange(ksize) - (ksize - 1) / 2) ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def _disk(radius, alias_blur):
    """The generator's disk(): an aliased disk, normalised, then cv2.GaussianBlur (float32, reflect-101)."""
    ax = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = 3 if radius <= 8 else 5
    X, Y = np.meshgrid(ax, ax)
    d = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=np.float32)
    d /= np.sum(d)
    g = _cv2_gaussian_kernel(ksize, alias_blur)
    d = ndimage.correlate1d(d, g, axis=0, mode="mirror")
    return ndimage.correlate1d(d, g, axis=1, mode="mirror").astype(np.float32)


def _filter2d(x, kernel):
    """cv2.filter2D semantics (correlation, BORDER_REFLECT_101) on every image and channel."""
    return ndimage.correlate(x, kernel[None, :, :, None].astype(np.float64), mode="mirror")


@register("defocus_blur")
def defocus_blur(x_u8, s, rngs):
    return np.clip(_filter2d(_f64(x_u8), _disk(*PARAMS["defocus_blur"][s - 1])), 0, 1) * 255


@register("glass_blur")
def glass_blur(x_u8, s, rngs):
    sigma, delta, iters = PARAMS["glass_blur"][s - 1]
    x = np.uint8(_gauss(_f64(x_u8), sigma) * 255)
    n, h, w = x.shape[:3]
    idx = np.arange(n)
    span = list(range(h - delta, delta, -1))
    # each image's offsets, drawn at once in the loop's order: (iterations, rows, cols, (dx, dy))
    offsets = _per_image(rngs, lambda r: r.integers(-delta, delta, size=(iters, len(span), len(span), 2)))
    for it in range(iters):
        for a, i in enumerate(span):
            for b, j in enumerate(span):
                dx, dy = offsets[:, it, a, b, 0], offsets[:, it, a, b, 1]
                # the generator's "swap" is x[h, w], x[h', w'] = x[h', w'], x[h, w] on numpy views: the right
                # side holds views, so x[h, w] gets x[h', w'] and x[h', w'] is written back unchanged. A copy.
                x[idx, i, j] = x[idx, i + dy, j + dx]
    return np.clip(_gauss(x / 255.0, sigma), 0, 1) * 255


@register("motion_blur")
def motion_blur(x_u8, s, rngs):
    radius, sigma = PARAMS["motion_blur"][s - 1]
    angles = np.array([r.uniform(-45, 45) for r in rngs])
    return motion_blur_u8(x_u8.astype(np.float64), radius, sigma, angles)


@register("zoom_blur")
def zoom_blur(x_u8, s, rngs):
    zooms = np.arange(1, PARAMS["zoom_blur"][s - 1], 0.01)
    x = (x_u8 / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for z in zooms:
        out += _clipped_zoom(x, z)
    return np.clip((x + out) / (len(zooms) + 1), 0, 1) * 255


@register("snow")
def snow(x_u8, s, rngs):
    c = PARAMS["snow"][s - 1]
    x = np.array(x_u8, dtype=np.float32) / 255.0
    n, h, w = x.shape[:3]
    draws = [(r.normal(size=(h, w), loc=c[0], scale=c[1]), r.uniform(-135, -45)) for r in rngs]
    layer = _clipped_zoom(np.stack([d[0] for d in draws])[..., None], c[2])
    layer[layer < c[3]] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)  # written to an 8-bit PNG for ImageMagick
    layer = motion_blur_u8(layer.astype(np.float64), c[4], c[5], np.array([d[1] for d in draws])) / 255.0
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2, axes=(1, 2)), 0, 1) * 255


@functools.lru_cache(maxsize=1)
def frost_textures() -> tuple[np.ndarray, ...]:
    """The generator's six frost photographs (shipped by the `imagecorruptions` package), read with cv2.imread,
    shrunk by cv2.resize(fx=0.2, fy=0.2) and turned from BGR to RGB, as the generator does: uint8."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("frost needs the frost textures of the `imagecorruptions` package; pip install it")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "frost")
    import cv2

    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    return tuple(cv2.resize(cv2.imread(os.path.join(folder, f)), (0, 0), fx=0.2, fy=0.2)[..., [2, 1, 0]]
                 for f in names)


def frost_draw(rng, textures) -> tuple[int, int, int]:
    """(texture, top, left): the generator draws among the first five textures, then the crop's corner."""
    t = int(rng.integers(5))
    return t, int(rng.integers(0, textures[t].shape[0] - 32)), int(rng.integers(0, textures[t].shape[1] - 32))


@register("frost")
def frost(x_u8, s, rngs):
    c = PARAMS["frost"][s - 1]
    tex = frost_textures()
    crops = []
    for r in rngs:
        t, i, j = frost_draw(r, tex)
        crops.append(tex[t][i:i + 32, j:j + 32])
    return np.clip(c[0] * x_u8.astype(np.float64) + c[1] * np.stack(crops), 0, 255)


def _plasma_fractal(rngs, mapsize=32, wibbledecay=3.0):
    """The generator's diamond-square fractal, one per image and generator, normalised to [0,1]."""
    n = len(rngs)
    m = np.zeros((n, mapsize, mapsize), dtype=np.float64)
    step, wibble = mapsize, 100.0

    def wibbled(a):
        return a / 4 + wibble * np.stack([r.uniform(-wibble, wibble, a.shape[1:]) for r in rngs])

    while step >= 2:
        h = step // 2
        corner = m[:, 0:mapsize:step, 0:mapsize:step]
        sq = corner + np.roll(corner, -1, axis=1)
        sq = sq + np.roll(sq, -1, axis=2)
        m[:, h:mapsize:step, h:mapsize:step] = wibbled(sq)
        dr = m[:, h:mapsize:step, h:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=2)
        m[:, 0:mapsize:step, h:mapsize:step] = wibbled(lt)
        tt = dr + np.roll(dr, 1, axis=2) + ul + np.roll(ul, -1, axis=1)
        m[:, h:mapsize:step, 0:mapsize:step] = wibbled(tt)
        step //= 2
        wibble /= wibbledecay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


@register("fog")
def fog(x_u8, s, rngs):
    c = PARAMS["fog"][s - 1]
    x = _f64(x_u8)
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + c[0] * _plasma_fractal(rngs, 32, c[1])[..., None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


@register("brightness")
def brightness(x_u8, s, rngs):
    c = PARAMS["brightness"][s - 1]
    x = _f64(x_u8)
    v = x.max(axis=-1, keepdims=True)  # HSV value; with hue and saturation fixed, RGB scales by v'/v
    v2 = np.clip(v + c, 0, 1)
    return np.clip(np.where(v > 0, x * v2 / np.maximum(v, 1e-12), v2), 0, 1) * 255


@register("contrast")
def contrast(x_u8, s, rngs):
    c = PARAMS["contrast"][s - 1]
    x = _f64(x_u8)
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _reflect101(k, size):
    """OpenCV's BORDER_REFLECT_101 of integer indices: d c b | a b c d | c b a."""
    period = 2 * (size - 1)
    k = np.abs(np.mod(k, period))
    return np.where(k > size - 1, period - k, k)


def _symmetric(k, size):
    """scipy.ndimage's mode='reflect' (half-sample symmetric) of integer indices: b a | a b c d | d c."""
    k = np.mod(k, 2 * size)
    return np.where(k >= size, 2 * size - 1 - k, k)


def _bilinear(x, ys, xs, border):
    """Sample (N, H, W, C) at float pixel coordinates (N, H, W), order 1, the four neighbours mapped by border."""
    n, h, w = x.shape[:3]
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    ya, yb, xa, xb = border(y0, h), border(y0 + 1, h), border(x0, w), border(x0 + 1, w)
    b = np.arange(n)[:, None, None]
    return ((1 - wy) * (1 - wx) * x[b, ya, xa] + (1 - wy) * wx * x[b, ya, xb]
            + wy * (1 - wx) * x[b, yb, xa] + wy * wx * x[b, yb, xb])


def elastic_points(h: int, w: int):
    """The generator's three reference points of the random affine map, float32."""
    centre, size = np.float32([h, w]) // 2, min(h, w) // 3
    return np.float32([centre + size, [centre[0] + size, centre[1] - size], centre - size])


def elastic_draws(rng, h, w, affine):
    """(points moved by the affine draw, dx field, dy field): the generator's draws, in its order."""
    pts2 = elastic_points(h, w) + rng.uniform(-affine, affine, size=(3, 2)).astype(np.float32)
    return pts2, rng.uniform(-1, 1, size=(h, w)), rng.uniform(-1, 1, size=(h, w))


@register("elastic_transform")
def elastic_transform(x_u8, s, rngs):
    alpha, sigma, affine = (v * 32 for v in PARAMS["elastic_transform"][s - 1])
    x = np.array(x_u8, dtype=np.float32) / 255.0
    n, h, w = x.shape[:3]
    pts1 = elastic_points(h, w)
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    src_y, src_x = np.empty((n, h, w)), np.empty((n, h, w))
    dxs, dys = np.empty((n, h, w)), np.empty((n, h, w))
    for k, r in enumerate(rngs):  # a 3x3 solve per image; the sampling below is batched
        pts2, dxs[k], dys[k] = elastic_draws(r, h, w, affine)
        A = np.hstack([pts1.astype(np.float64), np.ones((3, 1))])  # cv2.getAffineTransform: (x, y) points
        M = np.linalg.solve(A, pts2.astype(np.float64)).T  # 2x3, dst = M @ [x, y, 1]
        inv = np.linalg.inv(np.vstack([M, [0, 0, 1]]))  # warpAffine samples the source at M^-1 dst
        src_x[k] = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
        src_y[k] = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    x = _bilinear(x, src_y, src_x, _reflect101).astype(np.float32)  # cv2.warpAffine, BORDER_REFLECT_101
    dx = (_gauss(dxs, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (_gauss(dys, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    # scipy.ndimage.map_coordinates(order=1, mode='reflect'): half-sample symmetric borders
    out = _bilinear(x, gy[None] + dy, gx[None] + dx, _symmetric)
    return np.clip(out, 0, 1) * 255


def _per_image_pil(x_u8, fn):
    return np.stack([np.asarray(fn(Image.fromarray(img)).convert("RGB"), dtype=np.uint8) for img in x_u8])


@register("pixelate")
def pixelate(x_u8, s, rngs):
    c = PARAMS["pixelate"][s - 1]
    h = x_u8.shape[1]
    return _per_image_pil(x_u8, lambda im: im.resize((int(h * c), int(h * c)), Image.BOX).resize((h, h), Image.BOX))


def jpeg_roundtrip(im, quality):
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(buf)


@register("jpeg_compression")
def jpeg_compression(x_u8, s, rngs):
    q = PARAMS["jpeg_compression"][s - 1]
    return _per_image_pil(x_u8, lambda im: jpeg_roundtrip(im, q))


def corrupt(x_u8: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, 32, 32, 3) -> uint8 (N, 32, 32, 3); image k is seeded by (seed, corruption, severity, k)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    x_u8 = np.ascontiguousarray(x_u8, dtype=np.uint8)
    out = CORRUPTIONS[name](x_u8, severity, image_rngs(len(x_u8), name, severity, seed))
    return np.uint8(out)  # the generator's np.uint8(corruption(img)): truncation of a 0..255 float


def official_set(folder: str, name: str, severity: int, n: int):
    """The first n images of one severity from the official CIFAR-10-C files, or None if absent."""
    path, labels = os.path.join(folder, f"{name}.npy"), os.path.join(folder, "labels.npy")
    if not (os.path.exists(path) and os.path.exists(labels)):
        return None
    arr = np.load(path, mmap_mode="r")
    lab = np.load(labels, mmap_mode="r")
    per = len(arr) // 5  # severities 1..5 stacked, 10000 images each in test-set order
    lo = (severity - 1) * per
    return np.asarray(arr[lo:lo + n]), np.asarray(lab[lo:lo + n])


def cached_set(x_u8: np.ndarray, name: str, severity: int, cache_dir: str, seed: int = 0) -> np.ndarray:
    """Regenerate one (corruption, severity) set, caching it on disk keyed by the input images and the seed."""
    digest = hashlib.sha256(np.ascontiguousarray(x_u8).tobytes()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"{name}-s{severity}-seed{seed}-v{GENERATOR_VERSION}-{digest}.npy")
    if os.path.exists(path):
        try:
            return np.load(path)
        except (ValueError, OSError):
            pass  # a torn cache file is regenerated
    out = corrupt(x_u8, name, severity, seed)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npy"
    np.save(tmp, out)
    os.replace(tmp, path)
    return out
