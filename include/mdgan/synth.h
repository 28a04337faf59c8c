#ifndef MDGAN_SYNTH_H
#define MDGAN_SYNTH_H
// Procedural sky time-lapse clips in the Sky Time-lapse layout: the default job's data
// and the tests' data.
//
// Each video is one scene: a vertical sky gradient (palette per video: day blue, dusk
// orange/purple, overcast grey, dawn pink, blue hour), a fixed horizon silhouette
// (hills, mountains or a city skyline), and clouds: 5 octaves of hash-based 3-D
// gradient noise seen in perspective (smaller and denser towards the horizon),
// drifting with a wind that changes from clip to clip and evolving along the noise's
// time axis, octaves faded out where they would alias. The light changes slowly over
// the video (brightness and colour temperature ramp). The clips of a video are
// consecutive time windows of it, so its clouds continue from one clip to the next.
// Every pixel is a pure function of (seed, video, frame within the video, position),
// computed with + - * / sqrt and floor only (no libm transcendentals, no libc rand):
// the files are byte-identical for the same spec whatever the thread count, and
// should be on any IEEE-754 machine with the same libpng/libjpeg.

#include <stdint.h>

typedef struct {
    int clips;           // total clips, 1..100000
    int frames;          // frames per clip, 2..100000
    int size;            // frames are size x size pixels, 8..1024
    int clips_per_video; // consecutive clips per video (the last video may have fewer), >= 1
    uint64_t seed;
    int jpeg;            // 1: .jpg (quality 95), 0: .png
} SynthSpec;

// clips 64, frames 32, size 64, clips_per_video 4, seed 1, png.
void synth_spec_default(SynthSpec *spec);

// Writes out_root/video_%03d/clip_%03d/frame_%03d.png (or .jpg), creating the folders;
// clip numbers run over the whole set (video_001 holds clip_004.. with 4 per video),
// frame numbers restart at 0 in each clip. Each file is written atomically
// (image_save_png/jpeg); files of the same names are replaced, others left alone.
// OpenMP over frames. -1 with a message naming the bad field or the file.
int synth_write(const char *out_root, const SynthSpec *spec);

// Renders one frame (what synth_write writes, before encoding) into rgb (size, size, 3).
// clip is the global clip index, t the frame within it. Spec must be valid.
void synth_render(unsigned char *rgb, const SynthSpec *spec, int clip, int t);

#endif
