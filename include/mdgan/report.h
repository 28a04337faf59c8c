#ifndef MDGAN_REPORT_H
#define MDGAN_REPORT_H
// The HTML report of `mdgan report` (DESIGN.md section 6): a folder that opens offline
// from file:// in a browser.
//
//   out_dir/index.html        summary, charts, samples, config, checkpoints, events
//   out_dir/chart.min.js      Chart.js (UMD build, global `Chart`) from Debian's
//                             libjs-chart.js, copied so nothing loads from the network
//   out_dir/img/<run>_<stage>.png|.gif   newest contact sheet and GIF of each stage
//   out_dir/img/<run>_y1_sheet.png, <run>_y2_sheet.png   prediction sheets, when present
//                             (<run folder>/predict/y<N>/ or y<N>/contact_sheet.png)
//
// Charts (one per stage and metric group that any of the runs recorded a row for, NaN
// rows included; several runs are overlaid, one colour per run):
//   losses: discriminator (loss.d_*), generator (loss.g_*), batch Gram (loss.batch_gram_*),
//   any other loss.* name; validation: PSNR, SSIM, L1, motion ratio (Y1 beside Y2 in
//   refine), Gram distance (gram_y1, gram_y2); any other name gets a chart of its own,
//   shared with its y<N>_ and y<N>. prefixed forms. NaN values are gaps. The stage
//   REPORT_EVAL_STAGE (the evaluation after training, names "y1.psnr" ...) is one step:
//   a table beside the prediction sheets, no chart. The page writes the number of
//   charts it means to draw into <body data-charts-expected="N"> and, once its script
//   has created them, data-charts="N".
//
// A frame of a contact sheet smaller than IMAGE_VIEW_MIN_SIDE (data.size times the
// image_view_zoom the trainer applied) is shown enlarged, nearest neighbour.
//
// index.html is written last with fio_write_atomic and every copied file goes through
// a temporary name and a rename, so a browser reading during a refresh sees the old
// page or the new one, never half of one; a copied file whose bytes did not change is
// left alone. Every text from the database is HTML-escaped; the chart data is JSON in a
// <script type="application/json"> with every '<' written as \u003c.

#include "mdgan/db.h"

// Where the Chart.js build is copied from; $MDGAN_CHARTJS replaces it (another
// distribution's path, or a test of the missing-package message).
#define REPORT_CHARTJS_PATH "/usr/share/javascript/chart.js/chart.min.js"
#define REPORT_CHARTJS_PACKAGE "libjs-chart.js"
// The coordinator's stage name for the metrics of the evaluation after training.
#define REPORT_EVAL_STAGE "predict"

// Writes the report of the named runs of the open database (read-only is fine) into
// out_dir (created if missing). runs_dir: where run folders live, as <runs_dir>/<run.name>
// (NULL: <run.dir>/<run.name> of each run's config snapshot); run.name is the
// snapshot's, or the database name when the snapshot does not parse. A missing run
// folder or sample file is not an error: the page says what is missing.
// Returns 0, or -1 with a message (mdgan/error.h) naming the run, file or package
// that failed (an unknown run: "no run named 'x' in <db file>").
int report_write(Db *db, const char *const *runs, int nruns, const char *runs_dir, const char *out_dir);

#endif
