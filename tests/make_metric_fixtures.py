#!/usr/bin/python3
"""Reference values for tests/test_metrics.c, from scikit-image.

Writes tests/fixtures/metrics.safetensors (or the path given): a few pairs of smooth
random clips and skimage's SSIM / PSNR / MSE per frame and per clip, plus the motion
energies, all as DESIGN.md section 6 defines them (frames in [0, 1], frames 1..T-1).

    /usr/bin/python3 tests/make_metric_fixtures.py [tests/fixtures/metrics.safetensors]

Tensors, for each clip i:
  clip{i}.pred, clip{i}.real   F32 (3, T, H, W) in [-1, 1]
  clip{i}.frame_mse            F64 (T-1,)  skimage.metrics.mean_squared_error
  clip{i}.frame_psnr           F64 (T-1,)  skimage.metrics.peak_signal_noise_ratio,
                                           100 dB where the frames are identical (the
                                           C cap; skimage says inf)
  clip{i}.frame_ssim           F64 (T-1,)  skimage.metrics.structural_similarity
  clip{i}.clip                 F64 (6,)    mse, psnr, ssim, motion_pred, motion_real,
                                           motion_ratio
The metric references are F64 so the test measures the C code, not float rounding.
The safetensors file is written by hand (8-byte LE header length, JSON header padded
with spaces to 8-byte alignment, raw little-endian data).
"""
import json
import struct
import sys
import warnings

import numpy as np
import scipy.ndimage as ndi
import skimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

PSNR_MAX = 100.0
RATIO_MAX = 1e6


def smooth_clip(rng, T, H, W, sigma, amp=1.6):
    """(3, T, H, W) float32 in [-1, 1]: blurred noise through tanh."""
    x = rng.standard_normal((3, T, H, W))
    x = ndi.gaussian_filter(x, sigma=(0, 0.8, sigma, sigma), mode="wrap")
    x /= x.std() + 1e-12
    return np.tanh(amp * x).astype(np.float32)


def reference(pred, real):
    p = (pred.astype(np.float64) + 1.0) / 2.0
    r = (real.astype(np.float64) + 1.0) / 2.0
    T = pred.shape[1]
    mse, psnr, ssim = [], [], []
    for t in range(1, T):
        a, b = r[:, t], p[:, t]
        mse.append(mean_squared_error(a, b))
        if mse[-1] == 0:
            psnr.append(PSNR_MAX)
        else:
            psnr.append(peak_signal_noise_ratio(a, b, data_range=1.0))
        ssim.append(structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0,
                                          channel_axis=0))
    if T >= 3:
        mp = float(np.mean(np.abs(p[:, 2:] - p[:, 1:-1])))
        mr = float(np.mean(np.abs(r[:, 2:] - r[:, 1:-1])))
    else:
        mp = mr = 0.0
    ratio = min(mp / mr, RATIO_MAX) if mr > 0 else (RATIO_MAX if mp > 0 else 1.0)
    clip = [np.mean(mse), np.mean(psnr), np.mean(ssim), mp, mr, ratio]
    return (np.array(mse), np.array(psnr), np.array(ssim), np.array(clip, dtype=np.float64))


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs, off = [], 0
    for name, arr in tensors:
        dt = {np.float32: "F32", np.float64: "F64"}[arr.dtype.type]
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/metrics.safetensors"
    rng = np.random.default_rng(20180611)
    clips = []

    # 0: moving content, a prediction near the truth plus smooth error
    real = smooth_clip(rng, 5, 24, 20, 2.0)
    pred = np.clip(real + 0.3 * smooth_clip(rng, 5, 24, 20, 1.5), -1, 1).astype(np.float32)
    clips.append((pred, real))

    # 1: a static prediction (frame 0 repeated), saturated values, wide frames
    real = smooth_clip(rng, 4, 16, 32, 1.0, amp=4.0)
    real[:, :, :3, :] = 1.0
    real[:, :, -2:, :5] = -1.0
    pred = np.repeat(real[:, :1], 4, axis=1).copy()
    clips.append((pred, real))

    # 2: the smallest frame SSIM allows (11 x 13), frame 1 exact (PSNR cap), frame 2 noisy
    real = smooth_clip(rng, 3, 11, 13, 1.2)
    pred = real.copy()
    pred[:, 2] = np.clip(real[:, 2] + 0.2 * rng.standard_normal((3, 11, 13)), -1, 1)
    clips.append((pred, real))

    tensors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (pred, real) in enumerate(clips):
            mse, psnr, ssim, clip = reference(pred, real)
            tensors += [(f"clip{i}.pred", pred), (f"clip{i}.real", real),
                        (f"clip{i}.frame_mse", mse), (f"clip{i}.frame_psnr", psnr),
                        (f"clip{i}.frame_ssim", ssim), (f"clip{i}.clip", clip)]
            print(f"clip{i} {pred.shape}: mse {clip[0]:.6f} psnr {clip[1]:.4f} ssim {clip[2]:.6f} "
                  f"motion {clip[3]:.5f}/{clip[4]:.5f} = {clip[5]:.4f}")
    meta = {"generator": "tests/make_metric_fixtures.py", "skimage": skimage.__version__,
            "nclips": str(len(clips))}
    write_safetensors(out, tensors, meta)
    print("wrote", out)


if __name__ == "__main__":
    main()
