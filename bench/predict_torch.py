"""The PyTorch side of the predict benchmark (bench/predict.sh): one whole process that
does what `mdgan predict --checkpoint BASE --refine REFINE --image IMG --out DIR` does.

usage: /usr/bin/python3 bench/predict_torch.py BASE REFINE IMG OUT [--threads N]

It imports torch, reads G1.* from BASE and G2.* from REFINE the way the `safetensors`
package does (the file mapped, only those tensors copied out), builds both generators
(tests/mdgan_ref.py), runs G1 on the photo repeated T times and G2 on G1's clip, both
eval() under no_grad(), and writes the T frames of Y2 as PNG and a contact sheet (Y1
above Y2). The photo is used as it is (the benchmark's is already S x S).
"""

import json
import os
import struct
import sys
import time

t_start = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import mdgan_ref as ref  # noqa: E402

_DT = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32, "U8": np.uint8}


def load_prefixed(path, prefix):
    """({name without prefix: tensor} of the tensors under prefix, metadata), from a
    mapped file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", None) or {}
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, h in header.items():
        if not name.startswith(prefix + "."):
            continue
        b, e = h["data_offsets"]
        arr = np.frombuffer(mm[b:e], dtype=_DT[h["dtype"]]).reshape(h["shape"])
        out[name[len(prefix) + 1:]] = torch.from_numpy(arr.copy())
    return out, meta


def width(sd):
    return sd["downConv1.weight"].shape[0]


def main():
    base, refine, img_path, out = sys.argv[1:5]
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    t0 = time.time()
    (sd1, meta), (sd2, _) = load_prefixed(base, "G1"), load_prefixed(refine, "G2")
    img = np.array(Image.open(img_path).convert("RGB"))
    S, T = img.shape[0], int(meta.get("frames", 32))
    g1, g2 = ref.G1(T, S, S, width(sd1)), ref.G2(T, S, S, width(sd2))
    g1.load_state_dict(sd1)
    g2.load_state_dict(sd2)
    t1 = time.time()
    x = ref.image_to_input(img, T)
    y1 = ref.generator_output(g1, x, "running")
    t2 = time.time()
    y2 = ref.generator_output(g2, y1, "running")
    t3 = time.time()
    os.makedirs(out, exist_ok=True)
    u1, u2 = ref.clips_to_u8(y1)[0], ref.clips_to_u8(y2)[0]
    for t in range(T):
        Image.fromarray(u2[t]).save(os.path.join(out, "frame_%03d.png" % t))
    sheet = np.concatenate([np.concatenate(list(u), axis=1) for u in (u1, u2)], axis=0)
    Image.fromarray(sheet).save(os.path.join(out, "contact_sheet.png"))
    t4 = time.time()
    print("torch predict: import %.3f s, load %.3f s, G1 %.3f s, G2 %.3f s, write %.3f s"
          % (t0 - t_start, t1 - t0, t2 - t1, t3 - t2, t4 - t3))


if __name__ == "__main__":
    main()
