#include "mdgan/synth.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/rng.h"

#define SYNTH_MAX_SIZE 1024
#define SYNTH_MAX_CLIPS 100000
#define SYNTH_MAX_FRAMES 100000
#define SYNTH_JPEG_QUALITY 95
#define OCTAVES 5
#define SUBPIX 4     // silhouette supersampling per axis
#define MAX_BUILD 64 // buildings of a city skyline

void synth_spec_default(SynthSpec *spec) {
    spec->clips = 64;
    spec->frames = 32;
    spec->size = 64;
    spec->clips_per_video = 4;
    spec->seed = 1;
    spec->jpeg = 0;
}

// ---------------------------------------------------------------------------
// Hashing and noise: integer hashes only, so the field is the same on every run and
// every thread (no libc rand, no state).

static uint64_t mix64(uint64_t z) { // splitmix64 finaliser
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t hash3(uint32_t seed, int32_t x, int32_t y, int32_t z) {
    uint32_t h = seed ^ ((uint32_t)x * 0x8DA6B343u) ^ ((uint32_t)y * 0xD8163841u) ^
                 ((uint32_t)z * 0xCB1AB31Fu);
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    return h;
}

// Perlin's gradients: the 12 cube edge directions (4 repeated to fill 16), from a
// table rather than branches, which the hash makes unpredictable.
static const double GRAD[16][3] = {{1, 1, 0}, {-1, 1, 0}, {1, -1, 0}, {-1, -1, 0}, {1, 0, 1}, {-1, 0, 1},
                                   {1, 0, -1}, {-1, 0, -1}, {0, 1, 1}, {0, -1, 1}, {0, 1, -1}, {0, -1, -1},
                                   {1, 1, 0}, {0, -1, 1}, {-1, 1, 0}, {0, -1, -1}};
static double grad3(uint32_t h, double x, double y, double z) {
    const double *g = GRAD[h & 15];
    return g[0] * x + g[1] * y + g[2] * z;
}

static double fade(double t) { return t * t * t * (t * (t * 6 - 15) + 10); } // quintic: C2 joins
static double lerp(double a, double b, double t) { return a + (b - a) * t; }

// 3-D gradient noise, roughly in [-1, 1], zero at lattice points.
static double noise3(uint32_t seed, double x, double y, double z) {
    double fx = floor(x), fy = floor(y), fz = floor(z);
    int32_t ix = (int32_t)fx, iy = (int32_t)fy, iz = (int32_t)fz;
    double dx = x - fx, dy = y - fy, dz = z - fz;
    double u = fade(dx), v = fade(dy), w = fade(dz);
    double c[8];
    for (int k = 0; k < 8; k++) {
        int ox = k & 1, oy = (k >> 1) & 1, oz = k >> 2;
        c[k] = grad3(hash3(seed, ix + ox, iy + oy, iz + oz), dx - ox, dy - oy, dz - oz);
    }
    double x00 = lerp(c[0], c[1], u), x10 = lerp(c[2], c[3], u);
    double x01 = lerp(c[4], c[5], u), x11 = lerp(c[6], c[7], u);
    return lerp(lerp(x00, x10, v), lerp(x01, x11, v), w);
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
static double smoothstep(double a, double b, double x) {
    double t = clamp01((x - a) / (b - a));
    return t * t * (3 - 2 * t);
}

// Only + - * / sqrt and floor below, all exactly rounded in IEEE arithmetic, so the
// bytes do not depend on which libm (or which of its CPU variants) runs: sine by a
// Taylor polynomial after reduction to [-pi/2, pi/2] (error < 1e-9), and a smooth
// bump in place of exp(-q) (1 at 0, 0 from 4 on).
#define PI 3.14159265358979323846
static double sin_det(double x) {
    x -= 2 * PI * floor(x / (2 * PI) + 0.5); // [-pi, pi]
    if (x > PI / 2) x = PI - x;
    if (x < -PI / 2) x = -PI - x;
    double x2 = x * x, term = x, sum = x;
    for (int k = 1; k <= 7; k++) {
        term *= -x2 / ((2 * k) * (2 * k + 1));
        sum += term;
    }
    return sum;
}
static double cos_det(double x) { return sin_det(x + PI / 2); }
static double bump(double q) {
    if (q >= 4) return 0;
    double b = 1 - q / 4;
    b *= b;
    return b * b;
}

// ---------------------------------------------------------------------------
// Scene parameters, all drawn from the seed

typedef struct {
    double zenith[3], horizon[3], cloud_lit[3], cloud_dark[3], land[3], glow[3];
    double glow_strength;
    double th_lo, th_hi; // cloud threshold range on the normalised fbm (lower = more cloud)
} Palette;

enum { PAL_DAY, PAL_DUSK, PAL_OVERCAST, PAL_DAWN, PAL_BLUEHOUR, NPAL };

static const Palette palettes[NPAL] = {
    [PAL_DAY] = {{0.16, 0.36, 0.72}, {0.62, 0.77, 0.92}, {0.97, 0.97, 0.98}, {0.60, 0.64, 0.73},
                 {0.15, 0.21, 0.15}, {1.00, 0.98, 0.90}, 0.12, -0.08, 0.08},
    [PAL_DUSK] = {{0.22, 0.17, 0.44}, {0.98, 0.55, 0.26}, {0.98, 0.68, 0.55}, {0.36, 0.25, 0.40},
                  {0.08, 0.06, 0.10}, {1.00, 0.62, 0.30}, 0.45, -0.06, 0.08},
    [PAL_OVERCAST] = {{0.50, 0.53, 0.58}, {0.74, 0.75, 0.77}, {0.88, 0.89, 0.90}, {0.44, 0.46, 0.51},
                      {0.18, 0.20, 0.19}, {1.00, 1.00, 1.00}, 0.05, -0.24, -0.12},
    [PAL_DAWN] = {{0.30, 0.42, 0.70}, {0.98, 0.78, 0.64}, {1.00, 0.86, 0.80}, {0.50, 0.45, 0.56},
                  {0.12, 0.12, 0.15}, {1.00, 0.80, 0.60}, 0.30, -0.06, 0.10},
    [PAL_BLUEHOUR] = {{0.10, 0.13, 0.30}, {0.42, 0.40, 0.58}, {0.50, 0.47, 0.60}, {0.22, 0.22, 0.33},
                      {0.04, 0.04, 0.06}, {0.90, 0.55, 0.45}, 0.15, -0.08, 0.08},
};

enum { HOR_HILLS, HOR_MOUNTAINS, HOR_CITY, NHOR };

typedef struct {
    Palette pal;
    uint32_t cloud_seed, land_seed;
    double scale;      // cloud-plane noise units across the image width at depth 1
    double th, soft;   // cloud threshold and edge softness on the normalised fbm
    double thA, thw, thphi; // the threshold's slow swing th + thA sin(thphi + thw g)
    double evolve;     // noise time axis per frame: how fast cloud shapes change
    double wind_dir, wind_speed; // the video's prevailing wind (image widths per frame)
    double sun_u;      // horizontal position of the glow
    double hb;         // base horizon line, fraction of the height from the top
    int hor;           // HOR_*
    double ridge_amp, ridge_freq;
    int nbuild;
    double bx[MAX_BUILD + 1], bh[MAX_BUILD]; // city: building i spans [bx[i], bx[i+1]), height bh[i]
    double b0, bA, bw, bphi; // brightness b0 + bA sin(bphi + bw g)
    double w0, wA, ww, wphi; // warmth, the same form
} Video;

static double uni(Rng *r, double a, double b) { return a + (b - a) * rng_uniform(r); }

static void video_params(Video *vp, const SynthSpec *spec, int v) {
    Rng r;
    rng_seed(&r, mix64(spec->seed) ^ mix64(0x5EED0000ull + (uint64_t)v));
    // palettes and horizons cycle (5 and 3 are coprime), so any 5 videos show 5 skies
    int off = (int)(mix64(spec->seed ^ 0xA11CEull) % (NPAL * NHOR));
    int pal = (v + off) % NPAL, hor = (v + off / NPAL) % NHOR;
    vp->pal = palettes[pal];
    double (*cols[6])[3] = {&vp->pal.zenith, &vp->pal.horizon, &vp->pal.cloud_lit, &vp->pal.cloud_dark,
                            &vp->pal.land, &vp->pal.glow};
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++) (*cols[i])[c] = clamp01((*cols[i])[c] + uni(&r, -0.04, 0.04));
    vp->cloud_seed = (uint32_t)rng_next(&r);
    vp->land_seed = (uint32_t)rng_next(&r);
    vp->scale = uni(&r, 2.5, 4.0);
    vp->th = uni(&r, vp->pal.th_lo, vp->pal.th_hi);
    vp->soft = uni(&r, 0.12, 0.22);
    vp->thA = uni(&r, 0.02, 0.05);
    vp->thw = 2 * PI / uni(&r, 100, 300);
    vp->thphi = uni(&r, 0, 2 * PI);
    vp->evolve = uni(&r, 0.02, 0.045);
    vp->wind_dir = uni(&r, 0, 2 * PI);
    vp->wind_speed = uni(&r, 0.006, 0.016);
    vp->sun_u = uni(&r, 0.1, 0.9);
    vp->hb = uni(&r, 0.74, 0.86);
    vp->hor = hor;
    vp->ridge_amp = hor == HOR_MOUNTAINS ? uni(&r, 0.10, 0.22) : uni(&r, 0.04, 0.10);
    vp->ridge_freq = hor == HOR_MOUNTAINS ? uni(&r, 1.5, 3.0) : uni(&r, 1.0, 2.5);
    vp->nbuild = 0;
    if (hor == HOR_CITY) {
        double x = -uni(&r, 0, 0.05);
        while (x < 1.0 && vp->nbuild < MAX_BUILD) {
            vp->bx[vp->nbuild] = x;
            // a gap now and then, some towers, mostly mid-rise blocks
            double p = rng_uniform(&r);
            vp->bh[vp->nbuild] = p < 0.12 ? 0.0 : p < 0.25 ? uni(&r, 0.14, 0.26) : uni(&r, 0.03, 0.12);
            x += uni(&r, 0.02, 0.07);
            vp->nbuild++;
        }
        vp->bx[vp->nbuild] = x > 1.0 ? x : 1.0;
    }
    vp->b0 = uni(&r, 0.92, 1.05);
    vp->bA = uni(&r, 0.08, 0.16);
    vp->bw = 2 * PI / uni(&r, 150, 400); // a light cycle of 150..400 frames
    vp->bphi = uni(&r, 0, 2 * PI);
    vp->w0 = uni(&r, -0.3, 0.3);
    vp->wA = uni(&r, 0.3, 0.7);
    vp->ww = 2 * PI / uni(&r, 150, 400);
    vp->wphi = uni(&r, 0, 2 * PI);
}

// Clip k of video v: its wind in cloud-plane units per frame (the video's prevailing
// wind, turned and scaled a little per clip). Only the wind changes at a clip
// boundary, and the cloud positions integrate it: no cut between two clips.
static void clip_wind(double *vx, double *vz, const Video *vp, const SynthSpec *spec, int v, int k) {
    Rng r;
    rng_seed(&r, mix64(spec->seed ^ 0xC11Bull) ^ mix64(((uint64_t)v << 20) + (uint64_t)k));
    double dir = vp->wind_dir + uni(&r, -0.6, 0.6);
    double speed = vp->wind_speed * uni(&r, 0.6, 1.4) * vp->scale;
    *vx = speed * cos_det(dir);
    *vz = 0.5 * speed * sin_det(dir); // towards/away from the viewer reads slower on screen
}

// Height of the land above the base horizon line at u (fraction of the image height).
static double ridge(const Video *vp, double u) {
    double f = vp->ridge_freq, a = vp->ridge_amp;
    uint32_t s = vp->land_seed;
    if (vp->hor == HOR_MOUNTAINS) { // ridged noise: sharp peaks
        double sum = 0, amp = 1, norm = 0;
        for (int o = 0; o < 4; o++) {
            double n = 1 - fabs(noise3(s + (uint32_t)o, u * f * (1 << o), 0.37, 0.71));
            sum += amp * n * n;
            norm += amp;
            amp *= 0.5;
        }
        return a * sum / norm;
    }
    double hills = 0.5 + 0.6 * (noise3(s, u * f, 0.37, 0.71) + 0.5 * noise3(s + 1, u * f * 2, 0.37, 0.71));
    if (hills < 0) hills = 0;
    if (vp->hor == HOR_HILLS) return a * hills;
    double base = 0.25 * a * hills; // city: blocks on a low rise
    for (int i = 0; i < vp->nbuild; i++)
        if (u >= vp->bx[i] && u < vp->bx[i + 1]) return base + vp->bh[i];
    return base;
}

// ---------------------------------------------------------------------------
// Rendering

void synth_render(unsigned char *rgb, const SynthSpec *spec, int clip, int t) {
    const int S = spec->size;
    const int v = clip / spec->clips_per_video, k = clip % spec->clips_per_video;
    Video vp;
    video_params(&vp, spec, v);

    // clouds continue across the clips of a video: the offset integrates every
    // earlier clip's wind over its frames
    double offx = 0, offz = 0, vx, vz;
    for (int j = 0; j < k; j++) {
        clip_wind(&vx, &vz, &vp, spec, v, j);
        offx += vx * spec->frames;
        offz += vz * spec->frames;
    }
    clip_wind(&vx, &vz, &vp, spec, v, k);
    offx += vx * t;
    offz += vz * t;
    const double g = (double)k * spec->frames + t; // frame index within the video
    const double tau = g * vp.evolve;
    const double th = vp.th + vp.thA * sin_det(vp.thphi + vp.thw * g); // clouds build up and thin out

    // slow light change: brightness and colour temperature
    double bright = vp.b0 + vp.bA * sin_det(vp.bphi + vp.bw * g);
    double warm = vp.w0 + vp.wA * sin_det(vp.wphi + vp.ww * g);
    double tint[3] = {bright * (1 + 0.12 * warm), bright * (1 + 0.02 * warm), bright * (1 - 0.12 * warm)};

    // silhouette top (fraction of height from the top) at SUBPIX points per column
    double top[SUBPIX * SYNTH_MAX_SIZE];
    for (int i = 0; i < SUBPIX * S; i++) top[i] = vp.hb - ridge(&vp, (i + 0.5) / (SUBPIX * S));

    // perspective: a sky point at height h above the base horizon (0..1) looks at the
    // cloud plane at depth 1/(h + H0); X = (u - 1/2) depth scale, Z = depth scale
    const double H0 = 0.45;
    const double amp_norm = 1.0 / (1 + 0.5 + 0.25 + 0.125 + 0.0625);

    for (int y = 0; y < S; y++) {
        double vv = (y + 0.5) / S;
        double h = (vp.hb - vv) / vp.hb;
        if (h < 0) h = 0;
        if (h > 1) h = 1;
        double depth = 1.0 / (h + H0);
        double Z = depth * vp.scale;
        // noise units per pixel, the larger of the two axes: decides which octaves alias
        double rate_x = depth * vp.scale / S;
        double rate_y = vp.scale / ((h + H0) * (h + H0)) / vp.hb / S;
        double rate = rate_x > rate_y ? rate_x : rate_y;
        double haze = smoothstep(0.0, 0.3, h); // clouds thin out into haze at the horizon
        double skyt = sqrt(h); // the zenith colour takes over quickly
        for (int x = 0; x < S; x++) {
            double u = (x + 0.5) / S;
            // land coverage of this pixel from SUBPIX x SUBPIX samples
            int covn = 0;
            for (int sx = 0; sx < SUBPIX; sx++) {
                double tp = top[x * SUBPIX + sx];
                for (int sy = 0; sy < SUBPIX; sy++) covn += (y + (sy + 0.5) / SUBPIX) / S > tp;
            }
            double cov = covn / (double)(SUBPIX * SUBPIX);
            double col[3] = {0, 0, 0};
            if (cov < 1) {
                double du = u - vp.sun_u;
                double glow = vp.pal.glow_strength * bump(du * du / 0.05 + h * h / 0.06);
                double alpha = 0, thick = 0;
                if (haze > 0) {
                    double X = (u - 0.5) * depth * vp.scale;
                    double n = 0, amp = 1, f = 1;
                    for (int o = 0; o < OCTAVES; o++) {
                        // full weight below 0.3 lattice cells per pixel, none above 0.6
                        double wgt = clamp01((0.6 - rate * f) / 0.3);
                        if (wgt <= 0) break;
                        n += wgt * amp *
                             noise3(vp.cloud_seed + 0x9E37u * (uint32_t)o, (X - offx) * f, (Z - offz) * f,
                                    tau * f + 17.0 * o);
                        amp *= 0.5;
                        f *= 2;
                    }
                    n *= amp_norm;
                    alpha = smoothstep(th, th + vp.soft, n) * haze;
                    thick = smoothstep(th + 0.12, th + 0.55, n);
                }
                for (int c = 0; c < 3; c++) {
                    double sky = lerp(vp.pal.horizon[c], vp.pal.zenith[c], skyt) + vp.pal.glow[c] * glow;
                    double cloud = lerp(vp.pal.cloud_lit[c], vp.pal.cloud_dark[c], 0.6 * thick) +
                                   0.6 * vp.pal.glow[c] * glow;
                    col[c] = lerp(sky, cloud, alpha);
                }
            }
            if (cov > 0) {
                // darker towards the bottom, a faint static texture
                double depthl = clamp01((vv - vp.hb) / (1 - vp.hb));
                double tex = 0.06 * noise3(vp.land_seed ^ 0x1A2Du, u * 23.0, vv * 23.0, 0.5);
                for (int c = 0; c < 3; c++) {
                    double land = vp.pal.land[c] * (1.0 - 0.35 * depthl + tex) +
                                  0.12 * vp.pal.horizon[c] * (1 - depthl); // haze near the horizon
                    col[c] = lerp(col[c], land, cov);
                }
            }
            unsigned char *px = rgb + ((size_t)y * S + x) * 3;
            for (int c = 0; c < 3; c++) px[c] = (unsigned char)(int)(clamp01(col[c] * tint[c]) * 255.0 + 0.5);
        }
    }
}

// ---------------------------------------------------------------------------
// Files

static int spec_check(const char *out_root, const SynthSpec *spec) {
    if (!spec) {
        MDGAN_ERR("synth: no spec");
        return -1;
    }
    if (!out_root || !*out_root) {
        MDGAN_ERR("synth: the output folder is empty");
        return -1;
    }
    if (spec->clips < 1 || spec->clips > SYNTH_MAX_CLIPS) {
        MDGAN_ERR("synth: clips %d is not in 1..%d", spec->clips, SYNTH_MAX_CLIPS);
        return -1;
    }
    if (spec->frames < 2 || spec->frames > SYNTH_MAX_FRAMES) {
        MDGAN_ERR("synth: frames %d is not in 2..%d", spec->frames, SYNTH_MAX_FRAMES);
        return -1;
    }
    if (spec->size < 8 || spec->size > SYNTH_MAX_SIZE) {
        MDGAN_ERR("synth: size %d is not in 8..%d", spec->size, SYNTH_MAX_SIZE);
        return -1;
    }
    if (spec->clips_per_video < 1) {
        MDGAN_ERR("synth: clips_per_video %d must be >= 1", spec->clips_per_video);
        return -1;
    }
    if (spec->jpeg != 0 && spec->jpeg != 1) {
        MDGAN_ERR("synth: jpeg %d must be 0 or 1", spec->jpeg);
        return -1;
    }
    if ((double)spec->clips * spec->frames > (double)INT_MAX) {
        MDGAN_ERR("synth: %d clips of %d frames are too many files", spec->clips, spec->frames);
        return -1;
    }
    return 0;
}

static void clip_dir(char *out, size_t n, const char *root, const SynthSpec *spec, int clip) {
    snprintf(out, n, "%s/video_%03d/clip_%03d", root, clip / spec->clips_per_video, clip);
}

int synth_write(const char *out_root, const SynthSpec *spec) {
    if (spec_check(out_root, spec) != 0) return -1;
    size_t plen = strlen(out_root) + 64;
    char *path = malloc(plen);
    if (!path) {
        MDGAN_ERR("synth: out of memory");
        return -1;
    }
    for (int c = 0; c < spec->clips; c++) {
        clip_dir(path, plen, out_root, spec, c);
        if (fio_mkdir_p(path, 0755) != 0) {
            mdgan_errctx("synth");
            free(path);
            return -1;
        }
    }
    free(path);

    const int nitems = spec->clips * spec->frames;
    int first_bad = INT_MAX, stop = 0;
    char errbuf[1024] = "";
    #pragma omp parallel
    {
        Image img = {spec->size, spec->size, malloc((size_t)spec->size * spec->size * 3)};
        char *fpath = malloc(plen);
        #pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < nitems; i++) {
            int stopped;
            #pragma omp atomic read
            stopped = stop;
            if (stopped) continue;
            int clip = i / spec->frames, t = i % spec->frames, rc = -1;
            if (!img.rgb || !fpath) {
                MDGAN_ERR("synth: out of memory rendering a %dx%d frame", spec->size, spec->size);
            } else {
                synth_render(img.rgb, spec, clip, t);
                clip_dir(fpath, plen, out_root, spec, clip);
                size_t l = strlen(fpath);
                snprintf(fpath + l, plen - l, "/frame_%03d.%s", t, spec->jpeg ? "jpg" : "png");
                rc = spec->jpeg ? image_save_jpeg(&img, fpath, SYNTH_JPEG_QUALITY)
                                : image_save_png(&img, fpath);
            }
            if (rc != 0) {
                // report the failure of the lowest item, whatever the schedule
                #pragma omp critical(synth_err)
                {
                    if (i < first_bad) {
                        first_bad = i;
                        snprintf(errbuf, sizeof errbuf, "%s", mdgan_errmsg());
                    }
                }
                #pragma omp atomic write
                stop = 1;
            }
        }
        free(img.rgb);
        free(fpath);
    }
    if (first_bad != INT_MAX) {
        MDGAN_ERR("synth: %s", errbuf);
        return -1;
    }
    return 0;
}
