"""CIFAR-10-C: read the official files, or regenerate them with the CIFAR parameters of Hendrycks & Dietterich.

Each corruption is a function (x, severity, rng) -> x on float32 batches (N, 32, 32, 3) in [0,1], vectorized
over N (no per-pixel Python loops over images). Parameters are the CIFAR generator's, not the ImageNet ones.
Regenerated sets are statistically like the official files, not identical: rows label them `regenerated`.
Outputs are truncated to uint8 as the official generator does (np.uint8 of a 0..255 float).
"""
from __future__ import annotations

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


def register(name):
    def deco(fn):
        CORRUPTIONS[name] = fn
        return fn
    return deco


def _gauss(x, sigma, mode="nearest", truncate=4.0):
    """Spatial Gaussian over (N, H, W[, C]) batches; never across images or channels."""
    if sigma <= 0:
        return x
    s = (0, sigma, sigma) + ((0,) if x.ndim == 4 else ())
    return ndimage.gaussian_filter(x, s, mode=mode, truncate=truncate)


def _clipped_zoom(x, zoom):
    """Centre crop of size ceil(h/zoom), zoomed back (order 1), trimmed to h: (N, H, W, C)."""
    h = x.shape[1]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    size = int(round(ch * zoom))  # scipy.ndimage.zoom(order=1)'s output size; corners map to corners
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


def _motion_blur(x, radius, sigma, angles):
    """ImageMagick-style one-sided motion blur (the numpy port the corruption packages use), per-image angle."""
    width = radius * 2 + 1
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    py, px = width * np.sin(np.deg2rad(angles)), width * np.cos(np.deg2rad(angles))
    hyp = np.hypot(py, px)
    out = np.zeros_like(x, dtype=np.float32)
    for i in range(width):
        dy = -np.ceil(i * py / hyp - 0.5).astype(int)
        dx = -np.ceil(i * px / hyp - 0.5).astype(int)
        out += k[i] * _shift_gather(x, dy, dx)
    return out


def _gray(x):
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]


@register("gaussian_noise")
def gaussian_noise(x, s, rng):
    c = [0.04, 0.06, 0.08, 0.09, 0.10][s - 1]
    return x + rng.normal(size=x.shape, scale=c)


@register("shot_noise")
def shot_noise(x, s, rng):
    c = [500, 250, 100, 75, 50][s - 1]
    return rng.poisson(x * c) / c


@register("impulse_noise")
def impulse_noise(x, s, rng):
    c = [0.01, 0.02, 0.03, 0.05, 0.07][s - 1]
    x = x.copy()  # salt & pepper on each value with probability c, half salt, half pepper
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    x[hit & salt], x[hit & ~salt] = 1.0, 0.0
    return x


def _disk(radius, alias_blur):
    ax = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    X, Y = np.meshgrid(ax, ax)
    d = (X ** 2 + Y ** 2 <= radius ** 2).astype(np.float32)
    d /= d.sum()
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur ** 2))  # cv2.GaussianBlur with a 3x3 kernel
    g /= g.sum()
    return ndimage.convolve(ndimage.convolve1d(d, g, axis=0, mode="mirror"), g[None, :], mode="mirror")


def _filter2d(x, kernel):
    """cv2.filter2D semantics (correlation, BORDER_REFLECT_101) on every image and channel."""
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


@register("defocus_blur")
def defocus_blur(x, s, rng):
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1]
    return _filter2d(x, _disk(*c))


@register("glass_blur")
def glass_blur(x, s, rng):
    sigma, delta, iters = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][s - 1]
    x = np.uint8(np.clip(_gauss(x, sigma), 0, 1) * 255)
    n, h, w = x.shape[:3]
    idx = np.arange(n)
    # the generator's sequential pixel swaps, done for all images at once (the per-pixel loop stays sequential)
    for _ in range(iters):
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                d = rng.integers(-delta, delta, size=(n, 2))  # numpy randint: high exclusive, as the original
                i2, j2 = i + d[:, 1], j + d[:, 0]
                a, b = x[idx, i, j].copy(), x[idx, i2, j2].copy()
                x[idx, i, j], x[idx, i2, j2] = b, a
    return _gauss(x / 255.0, sigma)


@register("motion_blur")
def motion_blur(x, s, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][s - 1]
    return _motion_blur(x, radius, sigma, rng.uniform(-45, 45, size=len(x)))


@register("zoom_blur")
def zoom_blur(x, s, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][s - 1]
    zooms = np.arange(1, top, 0.01)
    out = np.zeros_like(x)
    for z in zooms:
        out += _clipped_zoom(x, z)
    return (x + out) / (len(zooms) + 1)


@register("snow")
def snow(x, s, rng):
    c = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
         (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][s - 1]
    n, h, w = x.shape[:3]
    layer = rng.normal(size=(n, h, w, 1), loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer, c[2])
    layer[layer < c[3]] = 0
    layer = np.uint8(np.clip(layer, 0, 1) * 255) / 255.0  # the generator round-trips the layer through 8 bits
    layer = _motion_blur(layer, c[4], c[5], rng.uniform(-135, -45, size=n))
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2, axes=(1, 2))


def _frost_textures():
    spec = importlib.util.find_spec("imagecorruptions")  # the package ships the six frost photographs
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("frost needs the frost textures of the `imagecorruptions` package; pip install it")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "frost")
    import cv2

    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    out = []
    for name in names:
        img = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
        out.append(cv2.resize(img, (0, 0), fx=0.2, fy=0.2).astype(np.float32) / 255.0)  # cv2, as the generator
    return out


@register("frost")
def frost(x, s, rng):
    c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][s - 1]
    tex = _frost_textures()
    out = np.empty_like(x)
    for n in range(len(x)):
        t = tex[rng.integers(5)]  # the generator draws among the first five
        i, j = rng.integers(0, t.shape[0] - 32), rng.integers(0, t.shape[1] - 32)
        out[n] = c[0] * x[n] + c[1] * t[i:i + 32, j:j + 32]
    return out


def _plasma_fractal(n, rng, mapsize=32, wibbledecay=3.0):
    """Diamond-square fractals, one per image, normalised to [0,1]: (n, mapsize, mapsize)."""
    m = np.zeros((n, mapsize, mapsize), dtype=np.float64)
    step, wibble = mapsize, 100.0

    def wibbled(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

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
def fog(x, s, rng):
    c = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s - 1]
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + c[0] * _plasma_fractal(len(x), rng, 32, c[1])[..., None]
    return x * max_val / (max_val + c[0])


@register("brightness")
def brightness(x, s, rng):
    c = [0.05, 0.1, 0.15, 0.2, 0.3][s - 1]
    v = x.max(axis=-1, keepdims=True)  # HSV value; hue and saturation fixed means scaling RGB by v'/v
    v2 = np.clip(v + c, 0, 1)
    return np.where(v > 0, x * v2 / np.maximum(v, 1e-12), v2)


@register("contrast")
def contrast(x, s, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][s - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _bilinear(x, ys, xs):
    """Sample (N, H, W, C) at float pixel coordinates (N, H, W) with reflect-101 borders, order 1."""
    n, h, w = x.shape[:3]

    def refl(v, size):
        period = 2 * (size - 1)
        v = np.abs(np.mod(v, period))
        return np.where(v > size - 1, period - v, v)

    ys, xs = refl(ys, h), refl(xs, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    b = np.arange(n)[:, None, None]
    return ((1 - wy) * (1 - wx) * x[b, y0, x0] + (1 - wy) * wx * x[b, y0, x1]
            + wy * (1 - wx) * x[b, y1, x0] + wy * wx * x[b, y1, x1])


@register("elastic_transform")
def elastic_transform(x, s, rng):
    alpha, sigma, affine = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                            (0.1, 0.03, 0.03)][s - 1]
    n, h, w = x.shape[:3]
    alpha, sigma, affine = alpha * h, sigma * h, affine * h
    centre, size = np.float32([h, w]) // 2, min(h, w) // 3
    pts1 = np.float32([centre + size, [centre[0] + size, centre[1] - size], centre - size])
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    src_y, src_x = np.empty((n, h, w)), np.empty((n, h, w))
    for k in range(n):  # a 3x3 solve per image; the sampling below is batched
        pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape)
        A = np.hstack([pts1, np.ones((3, 1))])  # cv2.getAffineTransform maps (x, y) points: columns 0=x 1=y
        M = np.linalg.solve(A, pts2).T  # 2x3, dst = M @ [x, y, 1]
        inv = np.linalg.inv(np.vstack([M, [0, 0, 1]]))  # warpAffine samples src at M^-1 dst
        src_x[k] = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
        src_y[k] = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    x = _bilinear(x, src_y, src_x)
    dx = _gauss(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gauss(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3) * alpha
    return _bilinear(x, gy[None] + dy, gx[None] + dx)


def _per_image_pil(x, fn):
    u8 = np.uint8(np.clip(x, 0, 1) * 255)
    return np.stack([np.asarray(fn(Image.fromarray(img)), dtype=np.float32) / 255.0 for img in u8])


@register("pixelate")
def pixelate(x, s, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]
    h = x.shape[1]
    return _per_image_pil(x, lambda im: im.resize((int(h * c), int(h * c)), Image.BOX).resize((h, h), Image.BOX))


@register("jpeg_compression")
def jpeg_compression(x, s, rng):
    q = [80, 65, 58, 50, 40][s - 1]

    def jpeg(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return Image.open(buf).convert("RGB")

    return _per_image_pil(x, jpeg)


def corrupt(x_u8: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, 32, 32, 3) -> uint8 (N, 32, 32, 3), seeded by (seed, corruption, severity)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity])
    out = CORRUPTIONS[name](x_u8.astype(np.float32) / 255.0, severity, rng)
    return np.uint8(np.clip(out, 0, 1) * 255)


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
    path = os.path.join(cache_dir, f"{name}-s{severity}-seed{seed}-{digest}.npy")
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
