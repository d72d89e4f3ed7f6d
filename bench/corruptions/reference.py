"""CIFAR-10-C corruptions written plainly, one image at a time, with the libraries the CIFAR generator uses.

The check on bench/corruptions/generator.py's vectorised path: the same steps as Hendrycks & Dietterich's CIFAR generator
(make_cifar_c.py), with scikit-image, OpenCV, scipy and PIL where it uses them, and ImageMagick's motion blur
through the numpy port of its kernel that the `imagecorruptions` package ships (then rounded to 8 bits, as
ImageMagick returns it). Each function takes one uint8 (32, 32, 3) image, a severity and the image's own
generator, draws exactly what the vectorised path draws for that image, and returns the generator's 0..255
values. Slow (a Python pixel loop in glass blur): for tests and audits, not for the bench.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import skimage as sk
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from skimage.filters import gaussian

from bench.corruptions.generator import (CORRUPTIONS, PARAMS, elastic_draws, elastic_points, frost_draw, frost_textures,
                               image_rngs, jpeg_roundtrip)

REFERENCE: dict = {}


def reference(name):
    def deco(fn):
        REFERENCE[name] = fn
        return fn
    return deco


def _magick_motion_blur(img255, radius, sigma, angle):
    with warnings.catch_warnings():  # the package imports pkg_resources, which warns
        warnings.simplefilter("ignore")
        from imagecorruptions.corruptions import _motion_blur
    return np.clip(np.round(_motion_blur(img255, radius=radius, sigma=sigma, angle=angle)), 0, 255)


def _clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scizoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


@reference("gaussian_noise")
def gaussian_noise(img, s, rng):
    x = np.array(img) / 255.
    return np.clip(x + rng.normal(size=x.shape, scale=PARAMS["gaussian_noise"][s - 1]), 0, 1) * 255


@reference("shot_noise")
def shot_noise(img, s, rng):
    c = PARAMS["shot_noise"][s - 1]
    x = np.array(img) / 255.
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


@reference("impulse_noise")
def impulse_noise(img, s, rng):
    x = sk.util.random_noise(np.array(img) / 255., mode="s&p", amount=PARAMS["impulse_noise"][s - 1], rng=rng)
    return np.clip(x, 0, 1) * 255


def _disk(radius, alias_blur=0.1, dtype=np.float32):
    L = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased_disk = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=dtype)
    aliased_disk /= np.sum(aliased_disk)
    return cv2.GaussianBlur(aliased_disk, ksize=ksize, sigmaX=alias_blur)


@reference("defocus_blur")
def defocus_blur(img, s, rng):
    x = np.array(img) / 255.
    kernel = _disk(*PARAMS["defocus_blur"][s - 1])
    channels = np.array([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]).transpose((1, 2, 0))
    return np.clip(channels, 0, 1) * 255


@reference("glass_blur")
def glass_blur(img, s, rng):
    sigma, delta, iters = PARAMS["glass_blur"][s - 1]
    x = np.uint8(gaussian(np.array(img) / 255., sigma=sigma, channel_axis=-1) * 255)
    span = range(32 - delta, delta, -1)
    offsets = rng.integers(-delta, delta, size=(iters, len(span), len(span), 2))
    for i in range(iters):
        for a, h in enumerate(span):
            for b, w in enumerate(span):
                dx, dy = offsets[i, a, b]
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]  # the generator's line, verbatim
    return np.clip(gaussian(x / 255., sigma=sigma, channel_axis=-1), 0, 1) * 255


@reference("motion_blur")
def motion_blur(img, s, rng):
    radius, sigma = PARAMS["motion_blur"][s - 1]
    return _magick_motion_blur(np.array(img).astype(np.float64), radius, sigma, rng.uniform(-45, 45))


@reference("zoom_blur")
def zoom_blur(img, s, rng):
    zooms = np.arange(1, PARAMS["zoom_blur"][s - 1], 0.01)
    x = (np.array(img) / 255.).astype(np.float32)
    out = np.zeros_like(x)
    for z in zooms:
        out += _clipped_zoom(x, z)
    return np.clip((x + out) / (len(zooms) + 1), 0, 1) * 255


@reference("snow")
def snow(img, s, rng):
    c = PARAMS["snow"][s - 1]
    x = np.array(img, dtype=np.float32) / 255.
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    angle = rng.uniform(-135, -45)
    layer = _clipped_zoom(layer[..., np.newaxis], c[2])
    layer[layer < c[3]] = 0
    layer = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)  # the 8-bit PNG handed to ImageMagick
    layer = _magick_motion_blur(layer.astype(np.float64), c[4], c[5], angle) / 255.
    layer = layer[..., np.newaxis]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(32, 32, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@reference("frost")
def frost(img, s, rng):
    c = PARAMS["frost"][s - 1]
    tex = frost_textures()
    t, i, j = frost_draw(rng, tex)
    return np.clip(c[0] * np.array(img) + c[1] * tex[t][i:i + 32, j:j + 32], 0, 255)


def _plasma_fractal(rng, mapsize=32, wibbledecay=3):
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize, wibble = mapsize, 100

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=0) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


@reference("fog")
def fog(img, s, rng):
    c = PARAMS["fog"][s - 1]
    x = np.array(img) / 255.
    max_val = x.max()
    x += c[0] * _plasma_fractal(rng, wibbledecay=c[1])[:32, :32][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


@reference("brightness")
def brightness(img, s, rng):
    x = sk.color.rgb2hsv(np.array(img) / 255.)
    x[:, :, 2] = np.clip(x[:, :, 2] + PARAMS["brightness"][s - 1], 0, 1)
    return np.clip(sk.color.hsv2rgb(x), 0, 1) * 255


@reference("contrast")
def contrast(img, s, rng):
    c = PARAMS["contrast"][s - 1]
    x = np.array(img) / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


@reference("elastic_transform")
def elastic_transform(img, s, rng):
    alpha, sigma, affine = (v * 32 for v in PARAMS["elastic_transform"][s - 1])
    image = np.array(img, dtype=np.float32) / 255.
    shape = image.shape
    pts2, ux, uy = elastic_draws(rng, 32, 32, affine)
    M = cv2.getAffineTransform(elastic_points(32, 32), pts2)
    image = cv2.warpAffine(image, M, shape[:2][::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(ux, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)[..., np.newaxis]
    dy = (gaussian(uy, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return np.clip(map_coordinates(image, indices, order=1, mode="reflect").reshape(shape), 0, 1) * 255


@reference("pixelate")
def pixelate(img, s, rng):
    c = PARAMS["pixelate"][s - 1]
    x = Image.fromarray(img)
    return np.asarray(x.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX))


@reference("jpeg_compression")
def jpeg_compression(img, s, rng):
    return np.asarray(jpeg_roundtrip(Image.fromarray(img), PARAMS["jpeg_compression"][s - 1]))


def corrupt_reference(x_u8: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """The per-image path: same seeds and draws as bench.corruptions.corrupt, uint8 out."""
    assert set(REFERENCE) == set(CORRUPTIONS)
    rngs = image_rngs(len(x_u8), name, severity, seed)
    return np.stack([np.uint8(REFERENCE[name](np.ascontiguousarray(img), severity, r)) for img, r in zip(x_u8, rngs)])
