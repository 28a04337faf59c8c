"""The PyTorch side of the `mdgan-refine infer` benchmark (bench/predict.sh): one whole
process that does what `mdgan-refine infer --checkpoint REFINE --input IN --out OUT`
does on a folder of Base-Net outputs.

usage: /usr/bin/python3 bench/refine_infer_torch.py REFINE IN OUT [--threads N]

It imports torch, reads G2.* from REFINE (mapped, as bench/predict_torch.py does),
builds G2 (tests/mdgan_ref.py) in eval() under no_grad(), then for every clip folder
IN/<video>/<clip>/ (T frames, names in sorted order): reads the frames, runs G2 on
running BatchNorm statistics and writes OUT/<video>/<clip>/<name>.png; last a contact
sheet of the first 4 clips (each input row above its refined row).
"""

import os
import sys
import time

t_start = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from predict_torch import load_prefixed, ref, width  # noqa: E402


def main():
    refine, indir, out = sys.argv[1:4]
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    t0 = time.time()
    sd2, meta = load_prefixed(refine, "G2")
    T = int(meta.get("frames", 32))
    clips = [(v, c) for v in sorted(os.listdir(indir)) if os.path.isdir(os.path.join(indir, v))
             for c in sorted(os.listdir(os.path.join(indir, v)))]
    g2 = None
    t_fwd = t_io = 0.0
    sheet_rows = []
    for v, c in clips:
        t1 = time.time()
        src = os.path.join(indir, v, c)
        names = sorted(os.listdir(src))[:T]
        u8 = np.stack([np.array(Image.open(os.path.join(src, n)).convert("RGB")) for n in names])  # T,S,S,3
        S = u8.shape[1]
        if g2 is None:
            g2 = ref.G2(T, S, S, width(sd2))
            g2.load_state_dict(sd2)
        x = ref.u8_to_clip(u8)
        t2 = time.time()
        y2 = ref.generator_output(g2, x, "running")
        t3 = time.time()
        u2 = ref.clips_to_u8(y2)[0]
        dst = os.path.join(out, v, c)
        os.makedirs(dst, exist_ok=True)
        for t, n in enumerate(names):
            Image.fromarray(u2[t]).save(os.path.join(dst, os.path.splitext(n)[0] + ".png"))
        if len(sheet_rows) < 8:
            sheet_rows += [np.concatenate(list(u8), axis=1), np.concatenate(list(u2), axis=1)]
        t_fwd += t3 - t2
        t_io += (t2 - t1) + (time.time() - t3)
    Image.fromarray(np.concatenate(sheet_rows, axis=0)).save(os.path.join(out, "contact_sheet.png"))
    print("torch refine infer: %d clips, import %.3f s, G2 forwards %.3f s, read+write %.3f s, total %.3f s"
          % (len(clips), t0 - t_start, t_fwd, t_io, time.time() - t_start))


if __name__ == "__main__":
    main()
