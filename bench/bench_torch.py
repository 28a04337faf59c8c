"""bench_torch: the PyTorch side of `make bench` (see bench/README.md).

The same cases as bench/bench_step.c, with the reference models of
tests/mdgan_ref.py, float32, torch.optim.Adam:

  --case train   one Stage I training step at T=32, 64x64, ngf=ndf=16, batch 4
  --case refine  the frozen G1 (eval, no_grad) makes Y1 from Y's first frame, then one
                 Stage II training step (G2, D2 on Y, Y1, Y2, Gram ranking loss), written
                 as tests/make_fixtures.py's stage2_step_fixture writes it, with the
                 refine.* defaults of the config; default shape as train
  --case infer   G1 forward in eval mode under torch.no_grad() at T=32, 128x128, ngf=32

Run with /usr/bin/python3 (the one with torch). One case per process, so ru_maxrss
is the peak of that case alone. Prints human-readable lines and, for bench/run.sh,
lines starting with ENV / RESULT / PHASE (key=value).
"""

import argparse
import ctypes
import os
import resource
import statistics
import sys
import time


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


RSS0 = max_rss_mib()  # before torch is imported

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import mdgan_ref  # noqa: E402

RSS_TORCH = max_rss_mib()  # after import, before any model


def openblas_in_process():
    """The OpenBLAS that torch loaded (libblas.so.3 -> OpenBLAS on Debian), through
    ctypes, or None. Found by its path in /proc/self/maps: no second copy is loaded."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for p in sorted(paths):
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_num_threads.restype = ctypes.c_int
            lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def self_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine_busy_s():
    """CPU seconds the machine spent busy since boot (user nice system irq softirq steal),
    or None; minus our own CPU time, how much other work shared the cores."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / float(os.sysconf("SC_CLK_TCK"))


def dcgan_init(model, gen):
    """As the C side's net_init: conv weights N(0, 0.02), BN gamma N(1, 0.02), beta 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.02)
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(1 + 0.02 * torch.randn(m.num_features, generator=gen))
                m.bias.zero_()
    return model


def repeated_frame(N, T, S, gen):
    """X: one random frame in [-1, 1] repeated T times, (N, 3, T, S, S)."""
    frame = torch.rand(N, 3, 1, S, S, generator=gen) * 2 - 1
    return frame.expand(N, 3, T, S, S).contiguous()


PHASES = [("g_fwd", "G1 forward (train BN)"), ("d_fwd_x2", "D forward on Y and Y1"),
          ("d_bwd_x2", "D backward x2 (no dx)"), ("adam_d", "Adam on D"),
          ("d_fwd_g", "D forward on Y1 (G loss)"), ("dg_bwd", "D + G1 backward (G loss)"),
          ("adam_g", "Adam on G1"), ("losses", "BCE/L1 losses + zero_grad")]



class Laps:
    """lap(k) adds the seconds since the previous lap (or since creation) to ph[k]."""

    def __init__(self, ph):
        self.ph, self.last = ph, time.perf_counter()

    def __call__(self, k):
        t = time.perf_counter()
        self.ph[k] = self.ph.get(k, 0.0) + t - self.last
        self.last = t

class Train:
    def __init__(self, a, gen):
        self.G = dcgan_init(mdgan_ref.G1(a.frames, a.size, a.size, a.nf), gen).train()
        self.D = dcgan_init(mdgan_ref.D(a.frames, a.size, a.size, a.nf), gen).train()
        betas = (0.5, 0.999)
        self.optG = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=betas, eps=1e-8)
        self.optD = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=betas, eps=1e-8)
        self.x = repeated_frame(a.batch, a.frames, a.size, gen)
        self.y = torch.rand(a.batch, 3, a.frames, a.size, a.size, generator=gen) * 2 - 1
        self.ones = torch.ones(a.batch, 1, 1, 1, 1)
        self.zeros = torch.zeros(a.batch, 1, 1, 1, 1)
        self.loss_d = self.loss_g = float("nan")

    def step(self, ph):
        lap = Laps(ph)

        bce = F.binary_cross_entropy_with_logits
        y1 = self.G(self.x)
        lap("g_fwd")
        # D step: BCE(D(Y), 1) + BCE(D(Y1), 0), Y1 detached
        lr, _, _ = self.D(self.y)
        lf, _, _ = self.D(y1.detach())
        lap("d_fwd_x2")
        self.optD.zero_grad(set_to_none=False)
        loss_d = bce(lr, self.ones) + bce(lf, self.zeros)
        lap("losses")
        loss_d.backward()
        lap("d_bwd_x2")
        self.optD.step()
        lap("adam_d")
        # G step: BCE(D(Y1), 1) + L1(Y1, Y) through the updated D; D's gradients are
        # computed (its parameters require grad) and discarded by the next zero_grad.
        lg, _, _ = self.D(y1)
        lap("d_fwd_g")
        self.optG.zero_grad(set_to_none=False)
        loss_g = bce(lg, self.ones) + F.l1_loss(y1, self.y)
        lap("losses")
        loss_g.backward()
        lap("dg_bwd")
        self.optG.step()
        lap("adam_g")
        self.loss_d, self.loss_g = loss_d.item(), loss_g.item()


# refine.* defaults of include/mdgan/config.h (and pipeline.conf), which bench_step
# reads with config_defaults(); each side prints them in its RESULT line and run.sh
# checks that they agree.
REFINE_LAMBDA_L1 = 100.0
REFINE_LAMBDA_RANK = 1.0
REFINE_RANK_FORM = "bounded"

REFINE_PHASES = [("g1_fwd", "frozen G1 forward (eval, no_grad)"), ("stage2", "Stage II step (G2, D2 x6, Adam x2)")]
# finer phases of the Stage II step, shown by this side alone (the C side's stage2_step
# is one call)
REFINE_DETAIL = [("g2_fwd", "G2 forward"), ("d_fwd_x3", "D2 forward on Y, Y1, Y2 (D step)"),
                 ("d_loss", "D2 losses (BCE, Gram ranking)"), ("d_bwd", "D2 backward (D loss)"),
                 ("adam_d", "Adam on D2"), ("d_fwd_g", "D2 forward x3 (G loss)"),
                 ("g_loss", "G2 losses (BCE, L1, ranking)"), ("dg_bwd", "D2 + G2 backward (G loss)"),
                 ("adam_g", "Adam on G2")]


def trained_running_stats(model, gen):
    """Running statistics as a trained model would have them (the C side draws the same
    distributions): mean 0.1 N(0, 1), var 1 + 0.2 U(0, 1)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(1 + 0.2 * torch.rand(m.num_features, generator=gen))
    return model


class Refine:
    def __init__(self, a, gen):
        T, S, nf, N = a.frames, a.size, a.nf, a.batch
        # G1 is frozen in Stage II and served by another process: eval mode, no gradients
        self.G1 = trained_running_stats(dcgan_init(mdgan_ref.G1(T, S, S, nf), gen), gen).eval()
        self.G1.requires_grad_(False)
        self.G2 = dcgan_init(mdgan_ref.G2(T, S, S, nf), gen).train()
        self.D = dcgan_init(mdgan_ref.D(T, S, S, nf), gen).train()
        betas = (0.5, 0.999)
        self.optG = torch.optim.Adam(self.G2.parameters(), lr=2e-4, betas=betas, eps=1e-8)
        self.optD = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=betas, eps=1e-8)
        self.y = torch.rand(N, 3, T, S, S, generator=gen) * 2 - 1
        self.lambda_l1, self.lambda_rank, self.form = REFINE_LAMBDA_L1, REFINE_LAMBDA_RANK, REFINE_RANK_FORM
        self.losses = {}

    def step(self, ph):
        lap = Laps(ph)

        y, N, T, S = self.y, self.y.shape[0], self.y.shape[2], self.y.shape[3]
        with torch.no_grad():  # what mdgan-base serve computes for the batch
            x = y[:, :, :1].expand(N, 3, T, S, S).contiguous()
            y1 = self.G1(x)
        lap("g1_fwd")
        g1_end = lap.last
        # From here as tests/make_fixtures.py's stage2_step_fixture.
        bce = F.binary_cross_entropy_with_logits
        d2, form = self.D, self.form

        def judge(y2):  # D2 on Y, Y1, Y2 in this order: three train-mode calls
            lr, f1r, f3r = d2(y)
            _, f1a, f3a = d2(y1)
            lb, f1b, f3b = d2(y2)
            return lr, lb, (f1r, f3r, f1a, f3a, f1b, f3b)

        def rank(f):
            f1r, f3r, f1a, f3a, f1b, f3b = f
            return mdgan_ref.rank_loss(mdgan_ref.gram_distance([f1b, f3b], [f1r, f3r], form),
                                       mdgan_ref.gram_distance([f1a, f3a], [f1r, f3r], form))

        y2 = self.G2(y1)
        lap("g2_fwd")
        logit_r, logit_f, feats = judge(y2.detach())
        lap("d_fwd_x3")
        d_rank = rank(feats)
        loss_d_real = bce(logit_r, torch.ones_like(logit_r))
        loss_d_fake = bce(logit_f, torch.zeros_like(logit_f))
        self.optD.zero_grad(set_to_none=False)
        loss_d = loss_d_real + loss_d_fake - self.lambda_rank * d_rank
        lap("d_loss")
        loss_d.backward()
        lap("d_bwd")
        self.optD.step()
        lap("adam_d")
        # G2 step through the updated D2; D2's gradients are computed (its parameters
        # require grad) and discarded by the next zero_grad
        _, logit_g, feats = judge(y2)
        lap("d_fwd_g")
        g_rank = rank(feats)
        loss_g_adv = bce(logit_g, torch.ones_like(logit_g))
        loss_g_l1 = (y2 - y).abs().mean()
        self.optG.zero_grad(set_to_none=False)
        loss_g = loss_g_adv + self.lambda_l1 * loss_g_l1 + self.lambda_rank * g_rank
        lap("g_loss")
        loss_g.backward()
        lap("dg_bwd")
        self.optG.step()
        lap("adam_g")
        ph["stage2"] = ph.get("stage2", 0.0) + lap.last - g1_end
        self.losses = {"d_real": loss_d_real.item(), "d_fake": loss_d_fake.item(), "d_rank": d_rank.item(),
                       "g_adv": loss_g_adv.item(), "g_l1": loss_g_l1.item(), "g_rank": g_rank.item()}


class Infer:
    def __init__(self, a, gen):
        self.G = dcgan_init(mdgan_ref.G1(a.frames, a.size, a.size, a.nf), gen).eval()
        with torch.no_grad():  # running statistics as a trained model would have them
            for m in self.G.modules():
                if isinstance(m, nn.BatchNorm3d):
                    m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                    m.running_var.copy_(1 + 0.2 * torch.rand(m.num_features, generator=gen))
        self.x = repeated_frame(a.batch, a.frames, a.size, gen)

    def step(self, ph):
        t0 = time.perf_counter()
        with torch.no_grad():
            self.y = self.G(self.x)
        ph["g_fwd"] = ph.get("g_fwd", 0.0) + time.perf_counter() - t0


def run_timed(fn, a):
    for _ in range(a.warmup):
        fn({})
    steps, phases = [], []
    busy0, self0 = machine_busy_s(), self_cpu_s()
    start = time.perf_counter()
    while len(steps) < a.max_iters and (len(steps) < a.iters or time.perf_counter() - start < a.min_time):
        ph = {}
        t = time.perf_counter()
        fn(ph)
        steps.append(time.perf_counter() - t)
        phases.append(ph)
    wall, busy1 = time.perf_counter() - start, machine_busy_s()
    other = -1.0 if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0 - (self_cpu_s() - self0)) / wall)
    return steps, phases, other


def fwd_flops(model, x_shape):
    """Nominal GFLOP of one forward, counted as the C side counts them."""
    total = [0.0]

    def hook(mod, inp, out):
        w = mod.weight.shape
        kv = w[2] * w[3] * w[4]
        if isinstance(mod, nn.ConvTranspose3d):
            n, _, t, h, ww = inp[0].shape  # column side = the transposed conv's input
        else:
            n, _, t, h, ww = out.shape
        total[0] += 2.0 * n * w[0] * w[1] * kv * t * h * ww

    mdgan_ref.forward_with_hooks(model, x_shape, (nn.Conv3d, nn.ConvTranspose3d), lambda name: hook)
    first = [m for m in model.modules() if isinstance(m, nn.Conv3d)][0]
    n, _, t, h, w = x_shape
    # first conv: output extent (T, H/2, W/2)
    first_flops = 2.0 * n * first.weight.shape[0] * first.weight[0].numel() * t * (h // 2) * (w // 2)
    return total[0], first_flops


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=("train", "refine", "infer"), default="train")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5, help="timed iterations at least")
    p.add_argument("--max-iters", type=int, default=1000)
    p.add_argument("--min-time", type=float, default=0.0, help="keep timing until this many seconds too")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int)
    p.add_argument("--nf", type=int)
    p.add_argument("--batch", type=int)
    a = p.parse_args()
    train = a.case == "train"
    small = a.case != "infer"  # the CPU training shape
    a.size = (64 if small else 128) if a.size is None else a.size
    a.nf = (16 if small else 32) if a.nf is None else a.nf
    a.batch = (4 if small else 1) if a.batch is None else a.batch
    a.max_iters = max(a.max_iters, a.iters)
    if a.threads < 1 or a.iters < 1 or a.warmup < 0:
        p.error("--threads and --iters must be >= 1, --warmup >= 0")
    if a.frames < 1 or a.size < 2 or a.nf < 1 or a.batch < 1:
        p.error("--frames, --nf and --batch must be >= 1, --size >= 2")

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    blas = openblas_in_process()
    if blas is not None:
        blas.openblas_set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    cfg = torch.__config__.show()
    cap = next((l.split(":", 1)[1].strip() for l in cfg.splitlines() if "CPU capability" in l), "?")
    blas_info = next((f.split("=", 1)[1] for f in cfg.replace(",", " ").split() if f.startswith("BLAS_INFO=")), "?")
    onednn = next((l.strip(" -") for l in cfg.splitlines() if "MKL-DNN" in l or "oneDNN" in l), "no oneDNN")
    bcfg = blas.openblas_get_config().decode() if blas is not None else "not loaded"
    bthr = blas.openblas_get_num_threads() if blas is not None else 0
    print("torch %s: %d threads (interop %d, OpenBLAS %d); %s; CPU capability %s; BLAS_INFO=%s; "
          "mkldnn enabled: %s; OpenBLAS in process: %s"
          % (torch.__version__, torch.get_num_threads(), torch.get_num_interop_threads(), bthr, onednn, cap,
             blas_info, torch.backends.mkldnn.is_available(), bcfg))
    print("ENV side=torch key=threads value=intra:%d,interop:%d,openblas:%d"
          % (torch.get_num_threads(), torch.get_num_interop_threads(), bthr))
    print("ENV side=torch key=torch value=torch %s, %s, CPU capability %s, BLAS_INFO=%s, mkldnn %s"
          % (torch.__version__, onednn, cap, blas_info, "on" if torch.backends.mkldnn.is_available() else "off"))
    print("ENV side=torch key=openblas value=%s" % bcfg)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        print("ENV side=torch key=%s value=%s" % (k, os.environ.get(k, "(unset)")))

    if train:
        b = Train(a, gen)
        gf, g1 = fwd_flops(b.G, tuple(b.x.shape))
        df, d1 = fwd_flops(b.D, tuple(b.x.shape))
        # G fwd + 3 D fwd + 2 D bwd without dx + D bwd with dx + G bwd without dx
        flops = gf + 3 * df + 2 * (2 * df - d1) + 2 * df + (2 * gf - g1)
    elif a.case == "refine":
        b = Refine(a, gen)
        shape = tuple(b.y.shape)
        g1f, _ = fwd_flops(b.G1, shape)
        gf, g1 = fwd_flops(b.G2, shape)
        df, d1 = fwd_flops(b.D, shape)
        # G1 fwd + G2 fwd + 6 D fwd + 3 D bwd without dx + D bwd with dx + G2 bwd without dx,
        # as bench_step counts it (PyTorch's G-loss backward also goes through D2's calls on
        # Y and Y1 for D2's weights; the count leaves that out on both sides)
        flops = g1f + gf + 6 * df + 3 * (2 * df - d1) + 2 * df + (2 * gf - g1)
    else:
        b = Infer(a, gen)
        flops, _ = fwd_flops(b.G, tuple(b.x.shape))
    steps, phases, other = run_timed(b.step, a)
    med, mn = statistics.median(steps), min(steps)
    rss = max_rss_mib()
    print("torch %s: T=%d %dx%d nf=%d batch=%d threads=%d: median %.4f s, min %.4f s over %d steps (%d warm-up); "
          "%.3f clips/s; %.2f GFLOP/step, %.1f GFLOP/s; max RSS %.1f MiB (%.1f MiB after import torch); "
          "other processes kept %.2f CPUs busy meanwhile"
          % ({"train": "train step", "refine": "refine step", "infer": "inference"}[a.case], a.frames, a.size, a.size, a.nf, a.batch, a.threads, med, mn,
             len(steps), a.warmup, a.batch / med, flops / 1e9, flops / 1e9 / med, rss, RSS_TORCH, other))
    print("RESULT side=torch case=%s T=%d H=%d W=%d nf=%d batch=%d threads=%d warmup=%d iters=%d "
          "median_s=%.6f min_s=%.6f clips_per_s=%.4f gflop=%.4f maxrss_mib=%.1f base_rss_mib=%.1f other_cpus=%.2f%s"
          % (a.case, a.frames, a.size, a.size, a.nf, a.batch, a.threads, a.warmup, len(steps), med, mn,
             a.batch / med, flops / 1e9, rss, RSS_TORCH, other,
             " lambda_l1=%g lambda_rank=%g rank_form=%s" % (b.lambda_l1, b.lambda_rank, b.form)
             if a.case == "refine" else ""))
    if a.case != "infer":
        shown = PHASES if train else REFINE_PHASES
        meds = {k: statistics.median(ph.get(k, 0.0) for ph in phases) for k, _ in shown}
        total = sum(meds.values())
        print("per phase (median over steps):")
        for k, desc in shown:
            print("  %-34s %8.4f s  %5.1f%%" % (desc, meds[k], 100 * meds[k] / total))
            print("PHASE side=torch case=%s name=%s median_s=%.6f" % (a.case, k, meds[k]))
        if not train:
            print("  of which (this side only):")
            for k, desc in REFINE_DETAIL:
                m = statistics.median(ph.get(k, 0.0) for ph in phases)
                print("    %-32s %8.4f s  %5.1f%%" % (desc, m, 100 * m / total))
    if train:
        print("last losses: D %.4f, G %.4f" % (b.loss_d, b.loss_g))
    elif a.case == "refine":
        l = b.losses
        print("last losses: D2 real %.4f fake %.4f rank %.4f; G2 adv %.4f L1 %.4f rank %.4f (lambda_l1 %g, "
              "lambda_rank %g, rank_form %s)" % (l["d_real"], l["d_fake"], l["d_rank"], l["g_adv"], l["g_l1"],
                                                 l["g_rank"], b.lambda_l1, b.lambda_rank, b.form))
    return 0


if __name__ == "__main__":
    sys.exit(main())
