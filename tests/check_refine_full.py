"""Full-size check of `mdgan-refine infer` against PyTorch: G2 at the reference shape
(T=32, 128x128, ngf=32, L=6) with random weights, on a folder of PNG clips.

usage: /usr/bin/python3 tests/check_refine_full.py [--bin BINDIR] [--bn running|batch]
                                                   [--seed N] [--keep] [--threads N]

Writes, to a temporary folder, G2 under the released model's bare state_dict keys
(fan-in-scaled weights, running statistics near the batch statistics of the first
clip: tests/mdgan_ref.py init_calibrated) and an input folder in the Sky Time-lapse
layout, in/v0/c0 (32 frames) and in/v0/c1 (64 frames: two windows), of smooth moving
content as a Base-Net gives; runs
  BINDIR/mdgan-refine infer --checkpoint G2 --input in --out out [--bn batch]
(frames and size from the weights and the input) and compares every output PNG with
PyTorch's G2 output quantised to 8 bits as the PNG writer does.
Prints "max difference N levels, P% of samples differ (tolerance 1 level)"; exit 0 =
pass, 1 = over tolerance, 2 = the binary failed or its output is malformed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mdgan_ref as ref  # noqa: E402

T, S, NGF = 32, 128, 32
TOL = 1  # 8-bit levels
CLIPS = (("v0", "c0", 32), ("v0", "c1", 64))


def make_clip(nframes, gen):
    """uint8 (nframes, S, S, 3): trilinear upsampling of low-resolution noise, tanh."""
    low = torch.randn(1, 3, nframes // 4, S // 8, S // 8, generator=gen)
    y = torch.tanh(1.3 * F.interpolate(low, size=(nframes, S, S), mode="trilinear", align_corners=False))
    return ref.clips_to_u8(y)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="bin", help="folder holding mdgan-refine (default bin)")
    ap.add_argument("--bn", choices=("running", "batch"), default="running")
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--threads", type=int, default=0, help="threads for both sides (default: all cores)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    threads = args.threads or max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)

    gen = torch.Generator().manual_seed(args.seed)
    frames = {(v, c): make_clip(n, gen) for v, c, n in CLIPS}
    torch.manual_seed(args.seed)
    g = ref.init_calibrated(ref.G2(T, S, S, NGF), ref.u8_to_clip(frames[CLIPS[0][:2]][:T]))

    tmp = tempfile.mkdtemp(prefix="mdgan_refine_full.")
    try:
        ckpt = os.path.join(tmp, "g2.safetensors")
        ref.write_safetensors(ckpt, dict(g.state_dict()), {"format": "pytorch-reference"})
        inp, out = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        for (v, c), u8 in frames.items():
            d = os.path.join(inp, v, c)
            os.makedirs(d)
            for t in range(len(u8)):
                ref.write_png(os.path.join(d, "frame_%05d.png" % t), u8[t])

        t0 = time.time()
        expected = {}
        for (v, c), u8 in frames.items():
            for w in range(len(u8) // T):
                y = ref.generator_output(g, ref.u8_to_clip(u8[w * T:(w + 1) * T]), args.bn)
                expected[(v, c, w)] = (y, ref.clips_to_u8(y)[0])
        ys = torch.cat([y.flatten() for y, _ in expected.values()])
        print("pytorch G2 T=%d %dx%d ngf=%d L=%d, bn=%s, %d windows in %.1f s: output mean %.4f std %.4f, "
              "|y|>0.99 %.2f%%" % (T, S, S, NGF, g.L, args.bn, len(expected), time.time() - t0, float(ys.mean()),
                                   float(ys.std()), 100 * float((ys.abs() > 0.99).float().mean())))

        exe = os.path.join(args.bin, "mdgan-refine")
        if not os.access(exe, os.X_OK):
            print("FAIL: %s does not exist or is not executable" % exe)
            return 2
        cmd = [exe, "infer", "--checkpoint", ckpt, "--input", inp, "--out", out, "--threads", str(threads)]
        if args.bn == "batch":
            cmd += ["--bn", "batch"]
        print("running:", " ".join(cmd))
        t0 = time.time()
        r = subprocess.run(cmd)
        print("mdgan-refine infer: %.1f s" % (time.time() - t0))
        if r.returncode != 0:
            print("FAIL: mdgan-refine infer exited with %d" % r.returncode)
            return 2

        worst, differ, total, where = 0, 0, 0, None
        for (v, c, w), (_, u8) in expected.items():
            for t in range(T):
                path = os.path.join(out, v, c, "frame_%05d.png" % (w * T + t))
                if not os.path.exists(path):
                    print("FAIL: %s was not written" % path)
                    return 2
                got = ref.read_png(path)
                if got.shape != u8[t].shape:
                    print("FAIL: %s is %s, expected %s" % (path, got.shape, u8[t].shape))
                    return 2
                diff = np.abs(got.astype(np.int32) - u8[t].astype(np.int32))
                if diff.max() > worst:
                    worst, where = int(diff.max()), path
                differ += int((diff != 0).sum())
                total += diff.size
        nfiles = sum(len(fs) for _, _, fs in os.walk(os.path.join(out, "v0")))
        if nfiles != len(expected) * T:
            print("FAIL: %d frame files written, expected %d" % (nfiles, len(expected) * T))
            return 2
        if not os.path.exists(os.path.join(out, "contact_sheet.png")):
            print("FAIL: no contact sheet")
            return 2
        print("max difference %d level%s, %.4f%% of %d samples differ (tolerance %d level)"
              % (worst, "" if worst == 1 else "s", 100.0 * differ / total, total, TOL))
        if worst > TOL:
            print("FAIL: worst in %s" % where)
            return 1
        print("PASS")
        return 0
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
