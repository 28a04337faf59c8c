#ifndef MDGAN_COORDINATOR_H
#define MDGAN_COORDINATOR_H
// The coordinator (DESIGN.md sections 4 and 5): `mdgan run` and `mdgan resume` start
// the stage processes, watch them over the control plane (control.h), restart the
// ones that fail, and record the run in SQLite (db.h); `mdgan runs`, `status`, `stop`,
// `refine` and `report` read what it recorded.
//
// A run's folder <run.dir>/<name>/ holds, besides what the stages write:
//   config.conf          the config snapshot the stages run with (also in SQLite)
//   coord.lock           flock'ed by the coordinator running the run (its pid inside)
//   coord.log            the coordinator's log when detached
//   logs/<stage>.log     each stage process's stdout and stderr
//   sockets/control.sock the coordinator's ROUTER (unless transport.control_endpoint)
//   predict/             after training: real/ (links to the validation videos), y1/, y2/,
//                        eval_y1.json, eval_y2.json
//   report/index.html    refreshed as evaluations arrive
#include "mdgan/config.h"

// What every coordinator command takes for where the database and the runs live.
typedef struct {
    const char *config_path;     // --config FILE (or `mdgan run CONFIG`)
    const char *sets[256];       // --set k=v
    int nsets;
} CoordWhere;

typedef struct {
    CoordWhere where;
    const char *name;            // --name (default: run.name, or run.name-N when taken)
    const char *stages;          // base | refine | all (default all)
    const char *base_checkpoint; // --base-checkpoint FILE (stages refine)
    int detach;
    const char *bindir;          // folder of mdgan, mdgan-base, mdgan-refine
} CoordRunArgs;

// Each returns the process exit code (0, 1 runtime, 2 usage, 130/143 stopped) and
// leaves a message for 1 and 2.
int coord_run(const CoordRunArgs *a);
int coord_resume(const char *run, const CoordRunArgs *a);   // name, stages ignored
int coord_stop(const CoordWhere *w, const char *run, double wait_s);
int coord_runs(const CoordWhere *w);
// live: redraw every second while the run is running (until it ends or SIGINT).
int coord_status(const CoordWhere *w, const char *run, int live);
// Refines a folder of Base-Net clips with a run's newest Refine-Net checkpoint (or a
// given checkpoint file), as a job of the run.
int coord_refine(const CoordWhere *w, const char *run, const char *checkpoint, const char *input,
                 const char *out, const char *bindir);
int coord_report(const CoordWhere *w, const char *const *runs, int nruns, const char *out_dir);

// The folder this executable is in (for the stage executables beside it).
int coord_bindir(char *out, size_t n);

#endif
