"""Writes the PyTorch reference fixtures used by the C tests.

usage: /usr/bin/python3 tests/make_fixtures.py OUTDIR

All tensors F32 unless stated (num_batches_tracked: I64 scalar). Deterministic:
every fixture reseeds torch's RNG, so a rerun gives the same bytes.
Models and I/O helpers: tests/mdgan_ref.py.
"""

import copy
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mdgan_ref as ref  # noqa: E402

torch.set_num_threads(1)
OUT = None


def save(name, tensors, meta=None):
    path = os.path.join(OUT, name)
    ref.write_safetensors(path, tensors, meta)
    back, _ = ref.read_safetensors(path)
    desc = " ".join("%s%s" % (k, list(v.shape)) for k, v in back.items())
    if len(desc) > 300:
        desc = "%d tensors, e.g. %s ..." % (len(back), desc[:240])
    print("%-28s %8d bytes  %s" % (name, os.path.getsize(path), desc))


def t3(v):
    return "%d,%d,%d" % tuple(v if isinstance(v, (tuple, list)) else (v, v, v))


def grads_of(out, dout, *inputs):
    """Gradients of sum(out * dout) with respect to inputs."""
    return torch.autograd.grad((out * dout).sum(), inputs)


# ---------------------------------------------------------------------------
# a, b) convolutions


def conv_fixture(fname, seed, cases, transpose):
    torch.manual_seed(seed)
    tensors, meta = {}, {}
    for c, (N, IC, OC, ins, k, s, p) in cases.items():
        k3 = k if isinstance(k, tuple) else (k, k, k)
        x = torch.randn(N, IC, *ins, requires_grad=True)
        wshape = (IC, OC) + k3 if transpose else (OC, IC) + k3
        w = (torch.randn(*wshape) * 0.2).requires_grad_()
        y = (F.conv_transpose3d if transpose else F.conv3d)(x, w, None, s, p)
        dy = torch.randn_like(y)
        dx, dw = grads_of(y, dy, x, w)
        for n, v in (("x", x), ("w", w), ("y", y), ("dy", dy), ("dx", dx), ("dw", dw)):
            tensors["%s.%s" % (c, n)] = v
        meta["%s.stride" % c] = t3(s)
        meta["%s.padding" % c] = t3(p)
    save(fname, tensors, meta)


# ---------------------------------------------------------------------------
# c, d) batch norm


def bn_fixtures():
    torch.manual_seed(3)
    C = 3
    x = (torch.randn(2, C, 3, 4, 5) * torch.tensor([2.0, 0.5, 1.5]).view(1, C, 1, 1, 1)
         + torch.tensor([1.0, -2.0, 0.3]).view(1, C, 1, 1, 1))
    weight = 1 + 0.5 * torch.randn(C)
    bias = 0.5 * torch.randn(C)
    rm = torch.randn(C)
    rv = 0.5 + torch.rand(C)

    def run(train):
        bn = nn.BatchNorm3d(C, eps=1e-5, momentum=0.1)
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
            bn.running_mean.copy_(rm)
            bn.running_var.copy_(rv)
        bn.train(train)
        xx = x.clone().requires_grad_()
        y = bn(xx)
        return bn, xx, y

    bn, xx, y = run(True)
    dy = torch.randn_like(y)
    dx, dw, db = grads_of(y, dy, xx, bn.weight, bn.bias)
    save("bn3d_train.safetensors", {
        "x": x, "weight": weight, "bias": bias, "running_mean_in": rm, "running_var_in": rv,
        "y": y, "dy": dy, "dx": dx, "dweight": dw, "dbias": db,
        "running_mean_out": bn.running_mean, "running_var_out": bn.running_var},
        {"momentum": "0.1", "eps": "1e-5"})

    bn, xx, y = run(False)
    dy = torch.randn_like(y)
    dx, dw, db = grads_of(y, dy, xx, bn.weight, bn.bias)
    save("bn3d_eval.safetensors", {
        "x": x, "weight": weight, "bias": bias, "running_mean": rm, "running_var": rv,
        "y": y, "dy": dy, "dx": dx, "dweight": dw, "dbias": db},
        {"momentum": "0.1", "eps": "1e-5"})


# ---------------------------------------------------------------------------
# e) Gram matrices and the ranking loss


def gram_rank_fixture(fname="gram_rank.safetensors", form="paper"):
    """The same inputs (seed 4) for either form of the distance."""
    torch.manual_seed(4)
    # Y1 and Y2 are Y plus noise of different sizes, scaled so that d(Y1,Y) and
    # d(Y2,Y) are of order 1 and differ (softplus in its curved part).
    feats = {}
    for layer, shape, scale in (("feat1", (2, 3, 4, 5, 6), 0.55), ("feat3", (2, 5, 2, 3, 3), 0.33)):
        y = torch.randn(*shape) * scale
        feats[layer + "_y"] = y
        feats[layer + "_y1"] = y + 0.9 * scale * torch.randn(*shape)
        feats[layer + "_y2"] = y + 0.6 * scale * torch.randn(*shape)
    leaves = {k: v.clone().requires_grad_() for k, v in feats.items()}
    fy = [leaves["feat1_y"], leaves["feat3_y"]]
    d_y1 = ref.gram_distance([leaves["feat1_y1"], leaves["feat3_y1"]], fy, form)
    d_y2 = ref.gram_distance([leaves["feat1_y2"], leaves["feat3_y2"]], fy, form)
    loss = ref.rank_loss(d_y2, d_y1)
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[k] for k in names])
    # |g(A)-g(B)| has a kink at 0: report the smallest gap so a sign flip from
    # rounding cannot happen in the C test.
    gap = min(float((ref.gram(leaves[a + s]) - ref.gram(leaves[a + "_y"])).abs().min()
                    / ref.gram(leaves[a + "_y"]).abs().max())
              for a in ("feat1", "feat3") for s in ("_y1", "_y2"))
    if form == "bounded":  # the divisor |g(Y)|_1 has kinks at g(Y)_ij = 0
        gap = min([gap] + [float(ref.gram(leaves[a + "_y"]).abs().min() / ref.gram(leaves[a + "_y"]).abs().max())
                           for a in ("feat1", "feat3")])
    tensors = dict(feats)
    tensors["gram1_y"] = ref.gram(feats["feat1_y"])
    tensors["d_y2"] = d_y2
    tensors["d_y1"] = d_y1
    tensors["loss"] = loss.reshape(1)
    for k, g in zip(names, grads):
        tensors["d" + k] = g
    meta = {"reduction": "loss = mean_n softplus(d_y2[n] - d_y1[n])",
            "gram": "g = x x^T / (M*S), M = C*T, S = H*W"}
    if form != "paper":  # the paper fixture stays as it was, byte for byte
        meta["form"] = form
        meta["distance"] = "d = sum_l |g_l(A) - g_l(Y)|_1 / (|g_l(Y)|_1 + 1e-12)"
    save(fname, tensors, meta)
    print("    %s: d_y1 %s d_y2 %s loss %.6f, smallest distance to a kink / max|gram| %.3g"
          % (form, d_y1.detach().numpy(), d_y2.detach().numpy(), float(loss), gap))


# ---------------------------------------------------------------------------
# f) one training step of G1, G2, D


def state_tensors(model, prefix=""):
    return {prefix + k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def step_fixture(fname, kind, seed, N=2, T=8, S=32, nf=4):
    torch.manual_seed(seed)
    model = {"g1": ref.G1, "g2": ref.G2, "d": ref.D}[kind](T, S, S, nf)
    ref.init_random(model)
    x = (torch.rand(N, 3, T, S, S) * 2 - 1).requires_grad_()
    tensors = {"x": x.detach().clone()}
    tensors.update(state_tensors(model))
    model.train()
    params = [(n, p) for n, p in model.named_parameters()]
    if kind == "d":
        logit, feat1, feat3 = model(x)
        dlogit, dfeat1, dfeat3 = torch.randn_like(logit), torch.randn_like(feat1), torch.randn_like(feat3)
        loss = (logit * dlogit).sum() + (feat1 * dfeat1).sum() + (feat3 * dfeat3).sum()
        tensors.update({"logit": logit, "feat1": feat1, "feat3": feat3,
                        "dlogit": dlogit, "dfeat1": dfeat1, "dfeat3": dfeat3})
    else:
        out = model(x)
        dout = torch.randn_like(out)
        loss = (out * dout).sum()
        tensors.update({"out": out, "dout": dout})
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    opt.zero_grad()
    loss.backward()
    tensors["dx"] = x.grad
    for n, p in params:
        tensors["grad." + n] = p.grad.detach().clone()
    opt.step()
    tensors.update(state_tensors(model, "new."))
    save(fname, tensors, {"T": str(T), "H": str(S), "W": str(S), "nf": str(nf), "N": str(N),
                          "kind": kind, "adam": "lr=2e-4 betas=0.5,0.999 eps=1e-8 step=1"})


# ---------------------------------------------------------------------------
# g) predict (released-model naming, bare names)


def predict_fixtures(T=8, S=32, nf=4):
    torch.manual_seed(7)
    g1 = ref.init_random(ref.G1(T, S, S, nf))
    torch.manual_seed(8)
    g2 = ref.init_random(ref.G2(T, S, S, nf))
    img = ref.smooth_image(S, 9)
    png = os.path.join(OUT, "predict_input.png")
    ref.write_png(png, img)
    assert np.array_equal(ref.read_png(png), img)
    print("%-28s %8d bytes  %dx%d RGB u8, min %d max %d" % ("predict_input.png", os.path.getsize(png),
                                                         S, S, img.min(), img.max()))
    x = ref.image_to_input(img, T)

    save("predict_g1.safetensors", dict(g1.state_dict()))
    save("predict_g1g2.safetensors", {**{"G1." + k: v for k, v in g1.state_dict().items()},
                                      **{"G2." + k: v for k, v in g2.state_dict().items()}})
    with torch.no_grad():
        g1.eval()
        g2.eval()
        y_running = g1(x)
        y2_running = g2(y_running)
        gb = copy.deepcopy(g1).train()
        y_batch = gb(x)
    for n, v in (("y_running", y_running), ("y_batch", y_batch), ("y2_running", y2_running)):
        print("    %s: mean %.4f std %.4f, |y|>0.99: %.2f%%" % (n, float(v.mean()), float(v.std()),
                                                             100 * float((v.abs() > 0.99).float().mean())))
    save("predict_expected.safetensors", {"x": x, "y_running": y_running, "y_batch": y_batch,
                                          "y2_running": y2_running},
         {"T": str(T), "H": str(S), "W": str(S), "ngf": str(nf),
          "x": "png u8 / 127.5 - 1, RGB, repeated T times"})


def smooth_clip(N, T, S):
    """(smooth, y): low-resolution noise upsampled to (T, S, S), and Y = tanh of it with
    a little fine noise, smooth-ish in (-1, 1)."""
    low = torch.randn(N, 3, T // 2, S // 4, S // 4)
    smooth = F.interpolate(low, size=(T, S, S), mode="trilinear", align_corners=False)
    return smooth, torch.tanh(1.5 * smooth + 0.3 * torch.randn(N, 3, T, S, S))


def train_mode_adam(g, d):
    """Both nets in train mode; their Adam optimizers with the defaults of DESIGN.md."""
    adam = dict(lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    g.train()
    d.train()
    return torch.optim.Adam(g.parameters(), **adam), torch.optim.Adam(d.parameters(), **adam)


def report_grads(named):
    """The first Adam step moves each weight by about lr * g / (|g| + eps): a gradient
    within rounding of 0 can flip the sign of its update. Print the smallest ones."""
    for who, gs in named:
        a = torch.cat([g.abs().flatten() for g in gs])
        print("    %s grads: min |g| %.3g, %d of %d below 1e-6, max |g| %.3g"
              % (who, float(a.min()), int((a < 1e-6).sum()), a.numel(), float(a.max())))


# ---------------------------------------------------------------------------
# h) one whole Stage I step (common/stage1.c): D1 step, then G1 against the updated D1


def stage1_step_fixture(fname="stage1_step.safetensors", seed=21, N=2, T=8, S=32, ngf=4, ndf=4,
                        lambda_l1=2.5):
    torch.manual_seed(seed)
    g1 = ref.init_random(ref.G1(T, S, S, ngf))
    d1 = ref.init_random(ref.D(T, S, S, ndf))
    _, y = smooth_clip(N, T, S)
    tensors = {"y": y}
    tensors.update(state_tensors(g1, "G1."))
    tensors.update(state_tensors(d1, "D1."))
    opt_g, opt_d = train_mode_adam(g1, d1)
    bce = F.binary_cross_entropy_with_logits

    x = y[:, :, :1].expand(N, 3, T, S, S).contiguous()
    y1 = g1(x)
    # D1 step: two separate train-mode calls (each updates the running statistics)
    logit_r, _, _ = d1(y)
    logit_f, _, _ = d1(y1.detach())
    loss_d_real = bce(logit_r, torch.ones_like(logit_r))
    loss_d_fake = bce(logit_f, torch.zeros_like(logit_f))
    opt_d.zero_grad()
    (loss_d_real + loss_d_fake).backward()
    grad_d = [p.grad.detach().clone() for p in d1.parameters()]
    opt_d.step()
    # G1 step through the updated D1 (a third train-mode call); D1's grads are discarded
    logit_g, _, _ = d1(y1)
    loss_g_adv = bce(logit_g, torch.ones_like(logit_g))
    loss_g_l1 = (y1 - y).abs().mean()
    opt_g.zero_grad()
    (loss_g_adv + lambda_l1 * loss_g_l1).backward()
    grad_g = [p.grad.detach().clone() for p in g1.parameters()]
    opt_g.step()

    tensors["y1"] = y1.detach()
    for k, v in (("loss_d_real", loss_d_real), ("loss_d_fake", loss_d_fake),
                 ("loss_g_adv", loss_g_adv), ("loss_g_l1", loss_g_l1)):
        tensors[k] = v.detach().reshape(1)
    tensors.update(state_tensors(g1, "new.G1."))
    tensors.update(state_tensors(d1, "new.D1."))
    save(fname, tensors, {"N": str(N), "T": str(T), "H": str(S), "W": str(S), "ngf": str(ngf),
                          "ndf": str(ndf), "lambda_l1": repr(lambda_l1),
                          "adam": "lr=2e-4 betas=0.5,0.999 eps=1e-8 step=1 (G1 and D1)"})
    # the smallest gradients, and the smallest |Y1 - Y| (the L1 term's kink)
    report_grads((("D1", grad_d), ("G1", grad_g)))
    print("    losses: d_real %.6f d_fake %.6f g_adv %.6f g_l1 %.6f; min |Y1-Y| %.3g"
          % (float(loss_d_real), float(loss_d_fake), float(loss_g_adv), float(loss_g_l1),
             float((y1 - y).abs().min())))


# ---------------------------------------------------------------------------
# i) one whole Stage II step (common/stage2.c): D2 step, then G2 against the updated D2


def stage2_step_fixture(fname="stage2_step.safetensors", form="paper", seed=31, N=2, T=8, S=32, ngf=4, ndf=4,
                        lambda_l1=2.5, lambda_rank=0.7):
    """The same nets and clips (seed) for either form of the ranking distance."""
    torch.manual_seed(seed)
    g2 = ref.init_random(ref.G2(T, S, S, ngf))
    d2 = ref.init_random(ref.D(T, S, S, ndf))
    smooth, y = smooth_clip(N, T, S)
    # Y1 as G1 would give it: the same scene, blurrier and less saturated
    y1 = torch.tanh(1.1 * smooth + 0.1 * torch.randn(N, 3, T, S, S))
    tensors = {"y": y, "y1": y1}
    tensors.update(state_tensors(g2, "G2."))
    tensors.update(state_tensors(d2, "D2."))
    opt_g, opt_d = train_mode_adam(g2, d2)
    bce = F.binary_cross_entropy_with_logits

    def judge(y2):  # D2 on Y, Y1, Y2 in this order: three train-mode calls
        lr, f1r, f3r = d2(y)
        _, f1a, f3a = d2(y1)
        lb, f1b, f3b = d2(y2)
        rank = ref.rank_loss(ref.gram_distance([f1b, f3b], [f1r, f3r], form),
                             ref.gram_distance([f1a, f3a], [f1r, f3r], form))
        return lr, lb, rank

    y2 = g2(y1)
    logit_r, logit_f, d_rank = judge(y2.detach())
    loss_d_real = bce(logit_r, torch.ones_like(logit_r))
    loss_d_fake = bce(logit_f, torch.zeros_like(logit_f))
    opt_d.zero_grad()
    (loss_d_real + loss_d_fake - lambda_rank * d_rank).backward()
    grad_d = [p.grad.detach().clone() for p in d2.parameters()]
    opt_d.step()
    _, logit_g, g_rank = judge(y2)
    loss_g_adv = bce(logit_g, torch.ones_like(logit_g))
    loss_g_l1 = (y2 - y).abs().mean()
    opt_g.zero_grad()
    (loss_g_adv + lambda_l1 * loss_g_l1 + lambda_rank * g_rank).backward()
    grad_g = [p.grad.detach().clone() for p in g2.parameters()]
    opt_g.step()

    tensors["y2"] = y2.detach()
    for k, v in (("loss_d_real", loss_d_real), ("loss_d_fake", loss_d_fake), ("loss_d_rank", d_rank),
                 ("loss_g_adv", loss_g_adv), ("loss_g_l1", loss_g_l1), ("loss_g_rank", g_rank)):
        tensors[k] = v.detach().reshape(1)
    tensors.update(state_tensors(g2, "new.G2."))
    tensors.update(state_tensors(d2, "new.D2."))
    meta = {"N": str(N), "T": str(T), "H": str(S), "W": str(S), "ngf": str(ngf),
            "ndf": str(ndf), "lambda_l1": repr(lambda_l1), "lambda_rank": repr(lambda_rank),
            "adam": "lr=2e-4 betas=0.5,0.999 eps=1e-8 step=1 (G2 and D2)"}
    if form != "paper":  # the paper fixture stays as it was, byte for byte
        meta["rank_form"] = form
    save(fname, tensors, meta)
    report_grads((("D2", grad_d), ("G2", grad_g)))
    print("    %s losses: d_real %.6f d_fake %.6f d_rank %.6f g_adv %.6f g_l1 %.6f g_rank %.6f"
          % (form, float(loss_d_real), float(loss_d_fake), float(d_rank), float(loss_g_adv), float(loss_g_l1),
             float(g_rank)))


# ---------------------------------------------------------------------------
# j) mdgan-refine infer: G2 under bare keys (and the same weights as an mdgan
#    checkpoint), a folder of input clips, PyTorch's refined clips


REFINE_CLIPS = (  # (video, clip, frame names in natural order, format)
    ("vid_a", "clip_1", ["frame_%05d.png" % i for i in range(8)], "png"),        # one window
    ("vid_a", "clip_2", ["frame_%05d.png" % i for i in range(10)], "png"),       # one window, 2 left over
    ("vid_b", "clip_1", ["frame_%05d.png" % i for i in range(16)], "png"),       # two windows
    ("vid_b", "clip_jpg", ["%d.jpg" % i for i in range(1, 11)], "jpg"),          # natural order: 1 .. 8 used
)


def refine_infer_fixtures(T=8, S=32, nf=4):
    """refine_input/<video>/<clip>/<frame>: the clips above (smooth moving content, as
    a Base-Net gives); refine_g2.safetensors: G2 under the released model's bare keys;
    refine_g2_ckpt.safetensors: the same weights as G2.* beside D2.* in an mdgan-style
    checkpoint; refine_expected.safetensors: per window "<video>/<clip>/<w>/" + input_u8
    (T, H, W, 3: the frames as PIL decodes them; PNG is exact, JPEG must decode alike
    here), y_running and y_batch (T, H, W, 3) = G2 on that input with running / batch
    statistics, quantised to uint8 as the PNG writer does (ref.clips_to_u8), and metadata
    windows (the keys in order) and "<key>/names" (the output names, comma-separated)."""
    from PIL import Image as PILImage
    import shutil

    torch.manual_seed(41)
    root = os.path.join(OUT, "refine_input")
    shutil.rmtree(root, ignore_errors=True)
    decoded = {}
    for video, clip, names, fmt in REFINE_CLIPS:
        nfr = len(names)
        low = torch.randn(1, 3, max(2, nfr // 4), S // 4, S // 4)
        vid = torch.tanh(1.3 * upsample(low, nfr, S))  # (1, 3, nfr, S, S)
        u8 = ref.clips_to_u8(vid)[0]                    # (nfr, S, S, 3)
        d = os.path.join(root, video, clip)
        os.makedirs(d)
        frames = []
        for t, name in enumerate(names):
            path = os.path.join(d, name)
            if fmt == "png":
                ref.write_png(path, u8[t])
                back = ref.read_png(path)
                assert np.array_equal(back, u8[t])
            else:
                PILImage.fromarray(u8[t]).save(path, format="JPEG", quality=90)
                back = np.asarray(PILImage.open(path).convert("RGB"))
            frames.append(back)
        decoded[(video, clip)] = (names, np.stack(frames))
    nfiles = sum(len(n) for _, _, n, _ in REFINE_CLIPS)
    print("%-28s %8d files   %d clip folders of %dx%d frames (PNG and one JPEG clip)"
          % ("refine_input/", nfiles, len(REFINE_CLIPS), S, S))

    # the weights, calibrated on the first window
    first = ref.u8_to_clip(decoded[("vid_a", "clip_1")][1][:T])
    g2 = ref.init_calibrated(ref.G2(T, S, S, nf), first)
    sd = dict(g2.state_dict())
    save("refine_g2.safetensors", sd, {"note": "G2 (T=%d, %dx%d, ngf=%d) under bare state_dict keys" % (T, S, S, nf)})
    torch.manual_seed(42)
    d2 = ref.init_random(ref.D(T, S, S, nf))
    save("refine_g2_ckpt.safetensors", {**{"G2." + k: v for k, v in sd.items()},
                                        **{"D2." + k: v for k, v in d2.state_dict().items()}},
         {"format": "mdgan-ckpt-1", "stage": "refine", "frames": str(T), "size": str(S)})

    tensors, meta, keys = {}, {"T": str(T), "H": str(S), "W": str(S), "ngf": str(nf)}, []
    sat, ys = [], []
    for video, clip, names, fmt in sorted(REFINE_CLIPS, key=lambda c: (c[0], c[1])):
        names, frames = decoded[(video, clip)]
        for w in range(len(names) // T):
            key = "%s/%s/%d" % (video, clip, w)
            keys.append(key)
            u8 = frames[w * T:(w + 1) * T]
            x = ref.u8_to_clip(u8)
            tensors[key + "/input_u8"] = u8
            for bn in ("running", "batch"):
                y = ref.generator_output(g2, x, bn)
                tensors[key + "/y_" + bn] = ref.clips_to_u8(y)[0]
                ys.append(y.flatten())
                sat.append(float((y.abs() > 0.99).float().mean()))
            meta[key + "/names"] = ",".join(os.path.splitext(n)[0] + ".png" for n in names[w * T:(w + 1) * T])
    meta["windows"] = ",".join(keys)
    save("refine_expected.safetensors", tensors, meta)
    ys = torch.cat(ys)
    print("    %d windows; outputs mean %.4f std %.4f, |y|>0.99: %.2f%% (worst window %.2f%%)"
          % (len(keys), float(ys.mean()), float(ys.std()), 100 * float((ys.abs() > 0.99).float().mean()),
             100 * max(sat)))


def upsample(low, T, S):
    """Trilinear upsampling of low-resolution noise to (T, S, S): smooth motion."""
    return F.interpolate(low, size=(T, S, S), mode="trilinear", align_corners=False)


def main():
    global OUT
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUTDIR" % sys.argv[0])
    OUT = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    conv_fixture("conv3d.safetensors", 1, {
        "a": (2, 3, 5, (5, 7, 6), (3, 4, 2), (1, 2, 3), (1, 1, 0)),
        "b": (2, 4, 6, (4, 8, 8), 4, 2, 1)}, transpose=False)
    conv_fixture("conv_transpose3d.safetensors", 2, {
        "a": (2, 5, 3, (3, 4, 3), (3, 4, 2), (1, 2, 3), (1, 1, 0)),
        "b": (2, 6, 4, (2, 4, 4), 4, 2, 1),
        "c": (2, 8, 4, (1, 1, 1), (2, 4, 4), 1, 0)}, transpose=True)
    bn_fixtures()
    gram_rank_fixture()
    gram_rank_fixture("gram_rank_bounded.safetensors", "bounded")
    step_fixture("g1_step.safetensors", "g1", 11)
    step_fixture("g2_step.safetensors", "g2", 12)
    step_fixture("d_step.safetensors", "d", 13)
    predict_fixtures()
    stage1_step_fixture()
    stage2_step_fixture()
    stage2_step_fixture("stage2_step_bounded.safetensors", "bounded")
    refine_infer_fixtures()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print("total %d bytes in %s" % (total, OUT))


if __name__ == "__main__":
    main()
