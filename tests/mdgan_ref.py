"""PyTorch reference for mdgan: the MD-GAN networks G1, G2, D, the Gram / ranking
losses, and hand-written safetensors and PNG I/O (no safetensors or PIL package).

Run with /usr/bin/python3 (torch + numpy). Used by tests/make_fixtures.py (which also
needs PIL, for the JPEG clip of the refine fixtures), tests/check_predict_full.py and
tests/check_refine_full.py; `python3 tests/mdgan_ref.py` prints the layer list of the
reference shape (T=32, 128x128, ngf=32).

Network definition: notes/brief.md "Network definition" and DESIGN.md section 2.
"""

import copy
import json
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Level count


def levels(T, H, W):
    """Returns (L, extents) for an input of T x H x W frames.

    extents[0] is the extent after conv1 (T, H/2, W/2); each k4 s2 p1 conv halves it
    while t, h, w are even and h/2, w/2 >= 4. L = n_down + 2 conv layers; the last
    conv's kernel is extents[-1]. Raises ValueError("impossible shape ...")."""
    if T < 1 or H < 2 or W < 2 or H % 2 or W % 2:
        raise ValueError("impossible shape T=%d H=%d W=%d: H and W must be even" % (T, H, W))
    t, h, w = T, H // 2, W // 2
    ext = [(t, h, w)]
    while t % 2 == 0 and h % 2 == 0 and w % 2 == 0 and h // 2 >= 4 and w // 2 >= 4:
        t, h, w = t // 2, h // 2, w // 2
        ext.append((t, h, w))
    n_down = len(ext) - 1
    if n_down < 2:
        raise ValueError("impossible shape T=%d H=%d W=%d: only %d downsampling levels (need 2)"
                         % (T, H, W, n_down))
    return n_down + 2, ext


def channels(nf, L):
    """C_i for i = 1..L-1 as a list indexed from 1 (index 0 unused)."""
    return [0] + [nf * min(2 ** (i - 1), 16) for i in range(1, L)]


# ---------------------------------------------------------------------------
# Networks (no biases anywhere)


class Generator(nn.Module):
    """G1 (skips=True) or G2 (skips=False: no upConv_{L-1}+downx1, upConv_{L-2}+downx2)."""

    def __init__(self, T, H, W, nf, skips=True):
        super().__init__()
        L, ext = levels(T, H, W)
        C = channels(nf, L)
        self.L, self.ext, self.C, self.skips = L, ext, C, skips
        k_last = ext[-1]
        # Registration order = state_dict order: all down layers, then all up layers.
        self.downConv1 = nn.Conv3d(3, C[1], (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=False)
        for i in range(2, L):
            setattr(self, "downConv%d" % i, nn.Conv3d(C[i - 1], C[i], 4, 2, 1, bias=False))
            setattr(self, "downBN%d" % i, nn.BatchNorm3d(C[i], eps=1e-5, momentum=0.1))
        setattr(self, "downConv%d" % L, nn.Conv3d(C[L - 1], C[L - 1], k_last, 1, 0, bias=False))
        self.upConv1 = nn.ConvTranspose3d(C[L - 1], C[L - 1], k_last, 1, 0, bias=False)
        self.upBN1 = nn.BatchNorm3d(C[L - 1], eps=1e-5, momentum=0.1)
        for i in range(2, L):
            setattr(self, "upConv%d" % i, nn.ConvTranspose3d(C[L + 1 - i], C[L - i], 4, 2, 1, bias=False))
            setattr(self, "upBN%d" % i, nn.BatchNorm3d(C[L - i], eps=1e-5, momentum=0.1))
        setattr(self, "upConv%d" % L, nn.ConvTranspose3d(C[1], 3, (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=False))

    def forward(self, x):
        L = self.L
        down = [None] * (L + 1)
        down[1] = self.downConv1(x)  # no BN, no activation
        h = down[1]
        for i in range(2, L):
            h = getattr(self, "downConv%d" % i)(h)
            h = F.leaky_relu(getattr(self, "downBN%d" % i)(h), 0.2)
            down[i] = h
        h = getattr(self, "downConv%d" % L)(h)  # (N, C_{L-1}, 1, 1, 1)
        for i in range(1, L):
            h = F.relu(getattr(self, "upBN%d" % i)(getattr(self, "upConv%d" % i)(h)))
            j = L - i  # encoder level of the same size
            if self.skips or j > 2:
                h = h + down[j]
        return torch.tanh(getattr(self, "upConv%d" % L)(h))


def G1(T, H, W, nf):
    return Generator(T, H, W, nf, skips=True)


def G2(T, H, W, nf):
    return Generator(T, H, W, nf, skips=False)


class D(nn.Module):
    """Discriminator; forward returns (logit (N,1,1,1,1), feat1, feat3)."""

    def __init__(self, T, H, W, nf):
        super().__init__()
        L, ext = levels(T, H, W)
        C = channels(nf, L)
        self.L, self.ext, self.C = L, ext, C
        self.conv1 = nn.Conv3d(3, C[1], (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=False)
        for i in range(2, L):
            setattr(self, "conv%d" % i, nn.Conv3d(C[i - 1], C[i], 4, 2, 1, bias=False))
            setattr(self, "bn%d" % i, nn.BatchNorm3d(C[i], eps=1e-5, momentum=0.1))
        setattr(self, "conv%d" % L, nn.Conv3d(C[L - 1], 1, ext[-1], 1, 0, bias=False))

    def forward(self, x):
        L = self.L
        h = F.leaky_relu(self.conv1(x), 0.2)
        feat1 = h
        feat3 = None
        for i in range(2, L):
            h = F.leaky_relu(getattr(self, "bn%d" % i)(getattr(self, "conv%d" % i)(h)), 0.2)
            if i == 3:
                feat3 = h
        logit = getattr(self, "conv%d" % L)(h)
        return logit, feat1, feat3


def init_random(model, gen=None):
    """The fixtures' init: conv weights normal(0, 0.05); BN weight 1+0.1*randn,
    bias 0.1*randn, running_mean 0.1*randn, running_var 1+0.2*rand.
    Draws in state_dict order from the global torch RNG (or gen)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.05)
            elif isinstance(m, nn.BatchNorm3d):
                c = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(1 + 0.2 * torch.rand(c, generator=gen))
    return model


def init_calibrated(model, x, gen=None):
    """Weights for checks of a whole generator's output (inference): conv weights
    normal(0, fan_in^-1/2) so that activations keep their scale through the layers, BN
    weight 1+0.1*randn and bias 0.1*randn, and running statistics close to (but not
    equal to) the batch statistics of x, so that neither the running-statistics nor the
    batch-statistics output saturates the final tanh (a saturated output would hide
    errors). One train-mode pass over x with momentum 1 sets running = batch stats,
    then mean += 0.1*randn*std, var *= 1 + 0.2*rand; num_batches_tracked = 1000.
    Draws from the global torch RNG (or gen), in module order."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                fan = m.weight.shape[1] * int(np.prod(m.kernel_size))
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * fan ** -0.5)
            elif isinstance(m, nn.ConvTranspose3d):
                fan = m.weight.shape[0] * int(np.prod(m.kernel_size)) // int(np.prod(m.stride))
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * fan ** -0.5)
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
        for m in bns:
            m.momentum = 1.0
        was = model.training
        model.train()
        model(x)
        model.train(was)
        for m in bns:
            m.momentum = 0.1
            c = m.num_features
            m.running_mean.add_(0.1 * torch.randn(c, generator=gen) * m.running_var.sqrt())
            m.running_var.mul_(1 + 0.2 * torch.rand(c, generator=gen))
            m.num_batches_tracked.fill_(1000)
    return model


def generator_output(g, x, bn):
    """G(x) without gradients, BatchNorm on running statistics (bn="running") or on the
    batch's own (bn="batch"; the running statistics are left untouched)."""
    with torch.no_grad():
        if bn == "running":
            return g.eval()(x)
        return copy.deepcopy(g).train()(x)


def clips_to_u8(y):
    """(N, 3, T, H, W) in [-1, 1] -> uint8 (N, T, H, W, 3) as image_from_chw quantises:
    round half up of (v + 1) * 127.5 computed in double, clamped to 0..255."""
    v = (y.detach().double().numpy() + 1.0) * 127.5
    u = np.floor(np.clip(v, 0, 255) + 0.5)
    return np.clip(u, 0, 255).astype(np.uint8).transpose(0, 2, 3, 4, 1)


def u8_to_clip(frames):
    """uint8 (T, H, W, 3) -> float32 (1, 3, T, H, W) = u8 / 127.5f - 1 (as the reader)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return x.permute(3, 0, 1, 2).unsqueeze(0).contiguous()


def forward_with_hooks(model, x_shape, types, make_hook):
    """One eval-mode, no-grad forward of zeros with make_hook(name) as a forward hook on
    every module of the given types; the model's train/eval mode is restored after."""
    hs = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if isinstance(m, types)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(x_shape))
    model.train(was)
    for h in hs:
        h.remove()


def describe(model, x_shape):
    """Lines 'name: module -> output shape' for every conv / BN, by running a forward."""
    lines = []

    def hook(name):
        def f(mod, inp, out):
            w = tuple(mod.weight.shape)
            extra = ""
            if isinstance(mod, (nn.Conv3d, nn.ConvTranspose3d)):
                extra = " k%s s%s p%s" % (tuple(mod.kernel_size), tuple(mod.stride), tuple(mod.padding))
            lines.append("%-10s %-16s w%-22s%s -> %s" % (name, type(mod).__name__, w, extra,
                                                       tuple(out.shape)))
        return f

    forward_with_hooks(model, x_shape, (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d), hook)
    return lines


# ---------------------------------------------------------------------------
# Losses


def gram(x):
    """x (N, C, T, H, W) -> (N, M, M), M = C*T, S = H*W, g = x x^T / (M*S)."""
    N, C, T, H, W = x.shape
    M, S = C * T, H * W
    f = x.reshape(N, M, S)
    return torch.bmm(f, f.transpose(1, 2)) / (M * S)


RANK_BOUNDED_EPS = 1e-12  # as include/mdgan/loss.h


def gram_distance(feats_a, feats_b, form="paper"):
    """d(A, B)[n] summed over layers; returns (N,). B is the real clip Y.
    paper:   sum_ij |g(A)_ij - g(B)_ij|
    bounded: the same divided by sum_ij |g(B)_ij| + RANK_BOUNDED_EPS (per layer, per
             sample), so that scaling the features does not change it."""
    if form not in ("paper", "bounded"):
        raise ValueError("unknown rank form %r" % form)
    d = 0
    for a, b in zip(feats_a, feats_b):
        gb = gram(b)
        dl = (gram(a) - gb).abs().sum(dim=(1, 2))
        if form == "bounded":
            dl = dl / (gb.abs().sum(dim=(1, 2)) + RANK_BOUNDED_EPS)
        d = d + dl
    return d


def rank_loss(d_y2, d_y1):
    """L_rank = mean over n of softplus(d(Y2,Y)[n] - d(Y1,Y)[n]) (scalar)."""
    return F.softplus(d_y2 - d_y1).mean()


# ---------------------------------------------------------------------------
# safetensors

_DT = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"), torch.int64: ("I64", "<i8"),
       torch.int32: ("I32", "<i4"), torch.uint8: ("U8", "u1"), torch.float16: ("F16", "<f2")}
_NP = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "F16": "<f2"}


def _to_np(v):
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().contiguous()
        dt, npdt = _DT[v.dtype]
        return dt, v.numpy().astype(npdt, copy=False)
    a = np.asarray(v)
    for dt, npdt in _NP.items():
        if a.dtype.kind == np.dtype(npdt).kind and a.dtype.itemsize == np.dtype(npdt).itemsize:
            return dt, a.astype(npdt, copy=False)
    raise TypeError("unsupported dtype %s" % a.dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> torch tensor or numpy array; written in that order,
    contiguous. metadata: dict str -> str. Header padded with spaces to 8-alignment."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, v in tensors.items():
        dt, a = _to_np(v)
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Returns (dict name -> numpy array (in file order), metadata dict). Checks that
    offsets are contiguous, in bounds and match shape x dtype size."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError("%s: too short" % path)
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError("%s: header length %d past end" % (path, n))
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    data = buf[8 + n:]
    out, end = {}, 0
    for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = h["data_offsets"]
        npdt = np.dtype(_NP[h["dtype"]])
        numel = int(np.prod(h["shape"], dtype=np.int64)) if h["shape"] else 1
        if b != end or e - b != numel * npdt.itemsize or e > len(data):
            raise ValueError("%s: tensor %s has bad offsets %s" % (path, name, h["data_offsets"]))
        out[name] = np.frombuffer(data[b:e], dtype=npdt).reshape(h["shape"])
        end = e
    if end != len(data):
        raise ValueError("%s: %d trailing bytes" % (path, len(data) - end))
    ordered = {k: out[k] for k in header}  # header order
    return ordered, meta


# ---------------------------------------------------------------------------
# PNG


def write_png(path, img):
    """img: uint8 array (H, W, 3) -> 8-bit RGB PNG, filter 0, zlib level 9."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    H, W, C = img.shape
    assert C == 3

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(H))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def read_png(path):
    """Minimal reader for PNGs written by write_png (8-bit RGB, any filter)."""
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, W, H = 8, b"", None, None
    while pos < len(buf):
        (n,) = struct.unpack(">I", buf[pos:pos + 4])
        tag, data = buf[pos + 4:pos + 8], buf[pos + 8:pos + 8 + n]
        pos += 12 + n
        if tag == b"IHDR":
            W, H, bd, ct = struct.unpack(">IIBB", data[:10])
            assert bd == 8 and ct == 2
        elif tag == b"IDAT":
            idat += data
    raw = zlib.decompress(idat)
    stride = W * 3
    img = np.zeros((H, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(H):
        ft = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for i in range(stride):
            a = cur[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + p) & 255
        img[y] = cur
        prev = cur
    return img.reshape(H, W, 3).astype(np.uint8)


def smooth_image(S, seed):
    """Deterministic smooth random RGB image, uint8 (S, S, 3), using the full 0..255 range."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, S, S)
    for res, amp in ((3, 0.9), (6, 0.4), (12, 0.15)):
        low = torch.rand(1, 3, res, res, generator=g) * 2 - 1
        img += amp * F.interpolate(low, size=(S, S), mode="bicubic", align_corners=False)
    img = (img - img.min()) / (img.max() - img.min())
    u8 = (img[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8)
    return u8.numpy()


def image_to_input(img, T):
    """uint8 (H, W, 3) RGB -> float32 (1, 3, T, H, W) = u8/127.5 - 1 repeated T times
    (float32 arithmetic: float(u8) / 127.5f - 1.0f)."""
    x = torch.from_numpy(np.ascontiguousarray(img)).float() / 127.5 - 1.0  # (H, W, 3)
    x = x.permute(2, 0, 1).unsqueeze(1)  # (3, 1, H, W)
    return x.expand(3, T, *x.shape[2:]).unsqueeze(0).contiguous()


if __name__ == "__main__":
    torch.manual_seed(0)
    for (T, S) in [(32, 128), (8, 32), (32, 64)]:
        L, ext = levels(T, S, S)
        print("T=%d %dx%d: L=%d extents %s" % (T, S, S, L, ext))
    T, S, nf = (int(a) for a in sys.argv[1:4]) if len(sys.argv) >= 4 else (32, 128, 32)
    for cls in (G1, D):
        m = cls(T, S, S, nf)
        print("== %s T=%d %dx%d nf=%d (L=%d): %d params" % (cls.__name__, T, S, S, nf, m.L,
                                                         sum(p.numel() for p in m.parameters())))
        print("\n".join(describe(m, (1, 3, T, S, S))))
        print("state_dict keys:", " ".join(k for k in m.state_dict()))
