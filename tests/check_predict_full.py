"""Full-size check of `mdgan predict` against PyTorch: G1 at the reference shape
(T=32, 128x128, ngf=32, L=6) with random weights and running statistics.

usage: /usr/bin/python3 tests/check_predict_full.py [--bin BINDIR] [--bn running|batch]
                                                    [--seed N] [--keep] [--dry-run]

Writes a bare-name checkpoint (PyTorch state_dict keys, num_batches_tracked as I64)
and a 128x128 RGB PNG to a temporary folder, runs
  BINDIR/mdgan predict --checkpoint F --image P --out D --frames 32 --size 128 --raw R
(plus `--bn batch` for the batch-statistics variant), reads R (little-endian float32,
shape (1, 3, T, S, S)) and compares it with the PyTorch output.
Prints "max abs error X (tolerance 1e-4)"; exit 0 = pass, 1 = over tolerance,
2 = the binary failed or its output is malformed.
--dry-run skips the binary: it checks the written checkpoint round-trips through the
safetensors reader and reproduces the same PyTorch output.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mdgan_ref as ref  # noqa: E402

T, S, NGF = 32, 128, 32
TOL = 1e-4


def build_model(x, seed):
    """G1 with fan-in-scaled random weights and running statistics close to (but not
    equal to) the batch statistics of x, so that neither the eval-mode nor the
    batch-mode output saturates the final tanh (a saturated output would hide errors)."""
    torch.manual_seed(seed)
    g = ref.G1(T, S, S, NGF)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.Conv3d):
                fan = m.weight.shape[1] * int(np.prod(m.kernel_size))
                m.weight.normal_(0, fan ** -0.5)
            elif isinstance(m, nn.ConvTranspose3d):
                fan = m.weight.shape[0] * int(np.prod(m.kernel_size)) // int(np.prod(m.stride))
                m.weight.normal_(0, fan ** -0.5)
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features))
                m.bias.copy_(0.1 * torch.randn(m.num_features))
        # Calibrate: one train-mode pass with momentum 1 sets running = batch stats,
        # then perturb them.
        bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm3d)]
        for m in bns:
            m.momentum = 1.0
        g.train()
        g(x)
        for m in bns:
            m.momentum = 0.1
            c = m.num_features
            m.running_mean.add_(0.1 * torch.randn(c) * m.running_var.sqrt())
            m.running_var.mul_(1 + 0.2 * torch.rand(c))
            m.num_batches_tracked.fill_(1000)
    return g


def forward(g, x, bn):
    with torch.no_grad():
        g.train(bn == "batch")
        return g(x)


def load_into(g, path):
    tensors, _ = ref.read_safetensors(path)
    sd = g.state_dict()
    if set(tensors) != set(sd):
        raise SystemExit("checkpoint keys differ: %s" % sorted(set(tensors) ^ set(sd)))
    g.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="bin", help="folder holding mdgan (default bin)")
    ap.add_argument("--bn", choices=("running", "batch"), default="running")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--dry-run", action="store_true", help="do not run the binary")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    img = ref.smooth_image(S, args.seed)
    x = ref.image_to_input(img, T)
    g = build_model(x, args.seed)
    expected = forward(g, x, args.bn).numpy()
    sat = float((np.abs(expected) > 0.99).mean())
    print("pytorch G1 T=%d %dx%d ngf=%d L=%d, bn=%s: output mean %.4f std %.4f, |y|>0.99 %.2f%%"
          % (T, S, S, NGF, g.L, args.bn, expected.mean(), expected.std(), 100 * sat))

    tmp = tempfile.mkdtemp(prefix="mdgan_predict_full.")
    try:
        ckpt = os.path.join(tmp, "g1.safetensors")
        png = os.path.join(tmp, "input.png")
        out = os.path.join(tmp, "out")
        raw = os.path.join(tmp, "y.raw")
        ref.write_safetensors(ckpt, dict(g.state_dict()), {"format": "pytorch-reference"})
        ref.write_png(png, img)
        if not np.array_equal(ref.read_png(png), img):
            raise SystemExit("PNG round trip failed")

        if args.dry_run:
            g2 = ref.G1(T, S, S, NGF)
            load_into(g2, ckpt)
            got = forward(g2, x, args.bn).numpy()
            err = float(np.abs(got - expected).max())
            print("dry run (checkpoint round trip through the reader): max abs error %g (tolerance %g)"
                  % (err, TOL))
            return 0 if err <= TOL else 1

        exe = os.path.join(args.bin, "mdgan")
        if not os.access(exe, os.X_OK):
            print("FAIL: %s does not exist or is not executable (use --dry-run to skip it)" % exe)
            return 2
        cmd = [exe, "predict", "--checkpoint", ckpt, "--image", png, "--out", out,
               "--frames", str(T), "--size", str(S), "--raw", raw]
        if args.bn == "batch":
            cmd += ["--bn", "batch"]
        print("running:", " ".join(cmd))
        r = subprocess.run(cmd)
        if r.returncode != 0:
            print("FAIL: mdgan predict exited with %d" % r.returncode)
            return 2
        if not os.path.exists(raw):
            print("FAIL: %s was not written" % raw)
            return 2
        got = np.fromfile(raw, dtype="<f4")
        if got.size != expected.size:
            print("FAIL: %s has %d floats, expected %d = 1x3x%dx%dx%d" % (raw, got.size, expected.size, T, S, S))
            return 2
        got = got.reshape(expected.shape)
        diff = np.abs(got.astype(np.float64) - expected)
        err = float(diff.max()) if np.all(np.isfinite(got)) else float("inf")
        print("max abs error %g (tolerance %g)" % (err, TOL))
        if err > TOL:
            i = np.unravel_index(int(np.argmax(diff)), diff.shape)
            print("FAIL: worst at %s: got %g expected %g" % (tuple(int(v) for v in i), got[i], expected[i]))
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
