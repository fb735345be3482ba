/* moelat-engine run under mpirun: one rank per device, each stepping one
 * slab of z planes (the planner of group.h); halo planes travel through
 * host-staged MPI_Isend/Irecv after every step. Rank 0 reads every input
 * file and broadcasts it, and gathers the states for every file it writes.
 * Every rank holds a whole lattice (same config and weights) so that the
 * boundaries and the input face stay global. */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "moelat/util.h"
#include "run_checks.h"
#include "run_slabs.h"
#include "train_ranks.h"

#define MSG_FLOATS (1 << 26) /* one message's floats: counts stay ints */

typedef struct rank_ctx {
    int rank, size;
    moelat_lattice *lat;
    int32_t *z0, *z1, halo;
    size_t plane, total;   /* floats per plane, in the lattice */
    float *buf;            /* total floats: staging for halos, gathers, broadcasts */
    moelat_slab_info info;
    uint64_t last_ckpt;    /* step of the last checkpoint saved or resumed */
    int threads;           /* MPI allows a stepping thread beside the main one */
} rank_ctx;

int run_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL; }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* 0, or -1 after printing which call failed on which rank. */
static int mpi_check(int rc, const char *what, int rank) {
    if (rc == MPI_SUCCESS)
        return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", rc);
    fprintf(stderr, "moelat-engine run: rank %d: %s failed: %s\n", rank, what, msg);
    return -1;
}

/* 1 when every rank says ok; a failed reduction counts as not ok. */
static int all_ok(rank_ctx *r, int ok) {
    int bad = !ok, any = 1;
    if (mpi_check(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce", r->rank))
        return 0;
    return !any;
}

static int bcast_floats(rank_ctx *r, float *p, size_t n) {
    for (size_t i = 0; i < n; i += MSG_FLOATS) {
        int c = (int)(n - i < MSG_FLOATS ? n - i : MSG_FLOATS);
        if (mpi_check(MPI_Bcast(p + i, c, MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast", r->rank))
            return -1;
    }
    return 0;
}

static int send_floats(rank_ctx *r, const float *p, size_t n, int to, int tag) {
    for (size_t i = 0; i < n; i += MSG_FLOATS) {
        int c = (int)(n - i < MSG_FLOATS ? n - i : MSG_FLOATS);
        if (mpi_check(MPI_Send(p + i, c, MPI_FLOAT, to, tag, MPI_COMM_WORLD), "MPI_Send", r->rank))
            return -1;
    }
    return 0;
}

static int recv_floats(rank_ctx *r, float *p, size_t n, int from, int tag) {
    for (size_t i = 0; i < n; i += MSG_FLOATS) {
        int c = (int)(n - i < MSG_FLOATS ? n - i : MSG_FLOATS);
        if (mpi_check(MPI_Recv(p + i, c, MPI_FLOAT, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv",
                      r->rank))
            return -1;
    }
    return 0;
}

static void lat_error(rank_ctx *r, const char *what) {
    fprintf(stderr, "moelat-engine run: rank %d (%s, planes [%d, %d)): %s%s\n", r->rank,
            r->lat ? moelat_device_name(r->lat) : "no lattice", r->z0[r->rank], r->z1[r->rank], what,
            r->lat ? moelat_last_error(r->lat) : "");
}

/* Every rank's own planes into rank 0's r->buf (the whole lattice). */
static int gather_states(rank_ctx *r) {
    int me = r->rank, ok = 1;
    size_t off = (size_t)r->z0[me] * r->plane, n = (size_t)(r->z1[me] - r->z0[me]) * r->plane;
    if (moelat_lattice_get_planes(r->lat, r->z0[me], r->z1[me], r->buf + off, n) != MOELAT_OK) {
        lat_error(r, "");
        ok = 0;
    }
    if (!all_ok(r, ok))
        return -1;
    if (me != 0)
        return all_ok(r, send_floats(r, r->buf + off, n, 0, 1) == 0) ? 0 : -1;
    for (int i = 1; i < r->size && ok; i++)
        ok = recv_floats(r, r->buf + (size_t)r->z0[i] * r->plane, (size_t)(r->z1[i] - r->z0[i]) * r->plane, i, 1) == 0;
    return all_ok(r, ok) ? 0 : -1;
}

/* One step and its halo exchange, overlapped: this rank's receives are
 * posted first, the step runs on a thread of its own (when MPI allows
 * threads, r->threads), and each send goes out as soon as the step has
 * delivered its planes into r->buf (moelat_lattice_deliver_planes' ready
 * callback: on a device while the interior chunks still run). Every send
 * is posted even when the step fails (its buffer is then stale), so that
 * no peer waits for a message that never comes; the ranks agree on the
 * step's status afterwards. Send and receive ranges of different peers
 * never overlap, so r->buf stages both. */
typedef struct step_run {
    moelat_lattice *lat;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready[2];   /* send range k is in r->buf (or the step failed) */
    int done, ok;   /* the step returned, and how */
    double step_ms; /* its own time, for the throughput */
    double done_at;
} step_run;

typedef struct ready_arg {
    step_run *run;
    int k;
} ready_arg;

static void send_range_ready(void *arg) {
    ready_arg *a = arg;
    pthread_mutex_lock(&a->run->mu);
    a->run->ready[a->k] = 1;
    pthread_cond_broadcast(&a->run->cv);
    pthread_mutex_unlock(&a->run->mu);
}

static void *step_thread(void *arg) {
    step_run *sr = arg;
    double t0 = now_ms();
    int ok = moelat_step(sr->lat, 1) == MOELAT_OK;
    pthread_mutex_lock(&sr->mu);
    sr->ok = ok;
    sr->done = 1;
    sr->done_at = now_ms();
    sr->step_ms = sr->done_at - t0;
    pthread_cond_broadcast(&sr->cv);
    pthread_mutex_unlock(&sr->mu);
    return NULL;
}

/* Waits until send range k is ready (k < 0: until the step is done),
 * driving MPI's progress on the n posted requests meanwhile. */
static void wait_step(step_run *sr, int k, MPI_Request *req, int n) {
    pthread_mutex_lock(&sr->mu);
    while (!sr->done && (k < 0 || !sr->ready[k])) {
        pthread_mutex_unlock(&sr->mu);
        int flag = 0;
        if (n > 0)
            MPI_Testall(n, req, &flag, MPI_STATUSES_IGNORE); /* progress only: Waitall reports errors */
        pthread_mutex_lock(&sr->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000; /* 0.2 ms */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!sr->done && (k < 0 || !sr->ready[k]))
            pthread_cond_timedwait(&sr->cv, &sr->mu, &ts);
    }
    pthread_mutex_unlock(&sr->mu);
}

/* Returns 0, or -1 when an MPI call failed (named on stderr); *step_ok
 * says whether this rank's step succeeded, *step_ms how long it took,
 * *done_at when it returned. */
static int step_exchange(rank_ctx *r, int *step_ok, double *step_ms, double *done_at) {
    int me = r->rank, n = 0, ok = 1;
    MPI_Request *req = malloc((size_t)2 * r->size * sizeof *req);
    if (!req) {
        fprintf(stderr, "moelat-engine run: rank %d: out of memory\n", me);
        *step_ok = 0;
        return -1;
    }
    for (int j = 0; j < r->size && ok; j++) {
        int32_t lo, hi;
        if (!moelat_slab_halo(r->z0, r->z1, j, me, r->halo, &lo, &hi))
            continue;
        size_t cnt = (size_t)(hi - lo) * r->plane;
        if (cnt > INT_MAX) {
            fprintf(stderr, "moelat-engine run: rank %d: halo of %zu floats from rank %d exceeds one MPI message\n", me,
                    cnt, j);
            ok = 0;
            break;
        }
        ok = !mpi_check(MPI_Irecv(r->buf + (size_t)lo * r->plane, (int)cnt, MPI_FLOAT, j, 2, MPI_COMM_WORLD, &req[n]),
                        "MPI_Irecv", me);
        n += ok;
    }
    step_run sr;
    memset(&sr, 0, sizeof sr);
    sr.lat = r->lat;
    pthread_mutex_init(&sr.mu, NULL);
    pthread_cond_init(&sr.cv, NULL);
    int32_t lo[2], hi[2];
    ready_arg args[2];
    int n_sends = moelat_slab_sends(r->z0, r->z1, r->size, me, r->halo, lo, hi), asked = 1;
    for (int k = 0; k < n_sends && asked; k++) {
        args[k] = (ready_arg){&sr, k};
        asked = moelat_lattice_deliver_planes(r->lat, lo[k], hi[k], r->buf + (size_t)lo[k] * r->plane,
                                              (size_t)(hi[k] - lo[k]) * r->plane, send_range_ready,
                                              &args[k]) == MOELAT_OK;
    }
    pthread_t th;
    int threaded = 0;
    if (!asked) {
        sr.done = 1; /* no step: the sends go out stale, the ranks stop together */
    } else {
        threaded = r->threads && pthread_create(&th, NULL, step_thread, &sr) == 0;
        if (!threaded)
            step_thread(&sr);
    }
    for (int j = 0; j < r->size && ok; j++) {
        int32_t a, b;
        if (!moelat_slab_halo(r->z0, r->z1, me, j, r->halo, &a, &b))
            continue;
        size_t cnt = (size_t)(b - a) * r->plane;
        if (cnt > INT_MAX) {
            lat_error(r, "halo exceeds one MPI message");
            ok = 0;
            break;
        }
        int k = n_sends > 1 && a >= lo[1] ? 1 : 0; /* the delivered range holding [a, b) */
        wait_step(&sr, k, req, n);
        ok = !mpi_check(MPI_Isend(r->buf + (size_t)a * r->plane, (int)cnt, MPI_FLOAT, j, 2, MPI_COMM_WORLD, &req[n]),
                        "MPI_Isend", me);
        n += ok;
    }
    wait_step(&sr, -1, req, n);
    if (threaded)
        pthread_join(th, NULL);
    /* Complete what was posted even after a failure, so no buffer is
     * left in flight. */
    if (n > 0 && mpi_check(MPI_Waitall(n, req, MPI_STATUSES_IGNORE), "MPI_Waitall", me))
        ok = 0;
    free(req);
    pthread_cond_destroy(&sr.cv);
    pthread_mutex_destroy(&sr.mu);
    *step_ok = sr.ok;
    *step_ms = sr.step_ms;
    *done_at = sr.done_at ? sr.done_at : now_ms();
    return ok ? 0 : -1;
}

/* After an agreed step: the received halo planes into the lattice. */
static int take_halos(rank_ctx *r) {
    int ok = 1;
    for (int j = 0; j < r->size && ok; j++) {
        int32_t lo, hi;
        if (!moelat_slab_halo(r->z0, r->z1, j, r->rank, r->halo, &lo, &hi))
            continue;
        if (moelat_lattice_set_planes(r->lat, lo, hi, r->buf + (size_t)lo * r->plane,
                                      (size_t)(hi - lo) * r->plane) != MOELAT_OK) {
            lat_error(r, "");
            ok = 0;
        }
    }
    return all_ok(r, ok) ? 0 : -1;
}

/* Re-split by measured throughput when the ranks differ by more than 10%:
 * the whole states go to every rank, then each takes its new slab. */
static int balance(rank_ctx *r) {
    double mine = r->info.cells_per_ms, *all = malloc((size_t)r->size * sizeof *all);
    if (!all || mpi_check(MPI_Allgather(&mine, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD), "MPI_Allgather",
                          r->rank)) {
        free(all);
        return all_ok(r, 0) ? 0 : -1;
    }
    double lo = all[0], hi = all[0];
    for (int i = 1; i < r->size; i++) {
        lo = all[i] < lo ? all[i] : lo;
        hi = all[i] > hi ? all[i] : hi;
    }
    int rc = 0;
    if (lo > 0 && hi > 1.1 * lo) {
        char err[512];
        rc = gather_states(r);
        if (rc == 0)
            rc = bcast_floats(r, r->buf, r->total);
        if (rc == 0 && moelat_slab_split((int32_t)(r->total / r->plane), r->size, all, r->z0, r->z1, err, sizeof err) !=
                           MOELAT_OK) {
            fprintf(stderr, "moelat-engine run: rank %d: %s\n", r->rank, err);
            rc = -1;
        }
        if (rc == 0 && (moelat_set_states(r->lat, r->buf, r->total) != MOELAT_OK ||
                        moelat_lattice_set_active_planes(r->lat, r->z0[r->rank], r->z1[r->rank]) != MOELAT_OK)) {
            lat_error(r, "re-splitting: ");
            rc = -1;
        }
        rc = all_ok(r, rc == 0) ? 0 : -1;
        memset(&r->info, 0, sizeof r->info);
    }
    free(all);
    return rc;
}

/* --weights, --state, --input: rank 0 reads, every rank receives. */
static int load_inputs(rank_ctx *r, const moelat_config *cfg, const run_opts *o) {
    int me = r->rank;
    if (o->weights) {
        int ok = me != 0 || moelat_load_weights(r->lat, o->weights) == MOELAT_OK;
        if (!ok)
            lat_error(r, "");
        if (!all_ok(r, ok))
            return -1;
        size_t n = moelat_weights_count(r->lat);
        float *w = malloc((n ? n : 1) * sizeof *w);
        ok = w && (me != 0 || moelat_get_weights(r->lat, w, n) == MOELAT_OK);
        ok = all_ok(r, ok) && bcast_floats(r, w, n) == 0;
        if (ok && me != 0 && moelat_set_weights(r->lat, w, n) != MOELAT_OK) {
            lat_error(r, "");
            ok = 0;
        }
        free(w);
        if (!all_ok(r, ok))
            return -1;
    }
    if (o->state) {
        int ok = me != 0 || (moelat_load_states(r->lat, o->state) == MOELAT_OK &&
                             moelat_get_states(r->lat, r->buf, r->total) == MOELAT_OK);
        if (!ok)
            lat_error(r, "");
        if (!all_ok(r, ok) || bcast_floats(r, r->buf, r->total) != 0)
            return -1;
        ok = me == 0 || moelat_set_states(r->lat, r->buf, r->total) == MOELAT_OK;
        if (!ok)
            lat_error(r, "");
        if (!all_ok(r, ok))
            return -1;
    }
    if (o->input) {
        size_t n = (size_t)cfg->dims[0] * cfg->dims[1] * MOELAT_EXT_SIZE;
        float *ext = me == 0 ? slab_read_input(cfg, o->input, &n) : malloc(n * sizeof *ext);
        int ok = all_ok(r, ext != NULL) && bcast_floats(r, ext, n) == 0;
        if (ok && moelat_set_external_input(r->lat, ext, n) != MOELAT_OK) {
            lat_error(r, "");
            ok = 0;
        }
        free(ext);
        if (!all_ok(r, ok))
            return -1;
    }
    if (o->save_weights) {
        int ok = me != 0 || moelat_save_weights(r->lat, o->save_weights) == MOELAT_OK;
        if (!ok)
            lat_error(r, "");
        if (!all_ok(r, ok))
            return -1;
    }
    return 0;
}

static int save_states(rank_ctx *r, const moelat_config *cfg, const char *path) {
    if (gather_states(r) != 0)
        return -1;
    int ok = 1;
    if (r->rank == 0) {
        int64_t shape[4] = {cfg->dims[2], cfg->dims[1], cfg->dims[0], cfg->state_size};
        char err[1024];
        if (moelat_npy_write(path, r->buf, 4, shape, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine run: rank 0: %s\n", err);
            ok = 0;
        }
    }
    /* -2: every rank knows the write failed and can go on to the other
     * outputs; -1 (a failed exchange) ends the run. */
    return all_ok(r, ok) ? 0 : -2;
}

/* A checkpoint in the single-lattice format: rank 0 gathers every slab's
 * planes into its own lattice (its other planes are halos or never read,
 * so no result changes) and saves it. */
static int save_checkpoint(rank_ctx *r, const run_opts *o) {
    if (gather_states(r) != 0)
        return -1;
    int ok = 1;
    if (r->rank == 0) {
        /* Rank 0's own planes are current already: take the others'. */
        for (int j = 1; j < r->size && ok; j++)
            ok = moelat_lattice_set_planes(r->lat, r->z0[j], r->z1[j], r->buf + (size_t)r->z0[j] * r->plane,
                                           (size_t)(r->z1[j] - r->z0[j]) * r->plane) == MOELAT_OK;
        ok = ok && moelat_save_checkpoint(r->lat, o->ckpt_dir) == MOELAT_OK;
        if (!ok)
            lat_error(r, "");
        else if (!o->json && !o->quiet)
            fprintf(stderr, "moelat-engine run: checkpoint at step %llu saved to %s\n",
                    (unsigned long long)moelat_step_count(r->lat), o->ckpt_dir);
    }
    return all_ok(r, ok) ? 0 : -1;
}

/* The step loop; step_ms gets rank 0's wall time per step, exchange
 * included (the ranks keep step with each other through it). */
static int run_steps(rank_ctx *r, const run_opts *o, const moelat_config *cfg, double *step_ms) {
    for (long long s = 0; s < o->steps; s++) {
        double t0 = now_ms(), own_ms = 0, done_at = 0;
        int ok = 0;
        int mpi_ok = step_exchange(r, &ok, &own_ms, &done_at) == 0;
        if (!ok)
            lat_error(r, "");
        if (!all_ok(r, ok && mpi_ok)) {
            if (ok && !mpi_ok)
                return -1; /* the step was fine: its states are not the failing ones */
            if (o->save_state && save_states(r, cfg, o->save_state) == 0 && r->rank == 0)
                fprintf(stderr, "moelat-engine run: states at the failing step saved to %s\n", o->save_state);
            return -1;
        }
        if (take_halos(r) != 0)
            return -1;
        double t2 = now_ms();
        step_ms[s] = t2 - t0;
        r->info.steps++;
        r->info.step_ms += t2 - t0;
        r->info.halo_ms += t2 - done_at; /* the exchange left after the step */
        double cells = (double)r->plane / cfg->state_size * (r->z1[r->rank] - r->z0[r->rank]);
        r->info.cells_per_ms = own_ms > 0 ? cells / own_ms : 0;
        if (s == 0 && !o->slab_weights && r->size > 1 && balance(r) != 0)
            return -1;
        if (o->ckpt_every && moelat_step_count(r->lat) % (uint64_t)o->ckpt_every == 0) {
            if (save_checkpoint(r, o) != 0)
                return -1;
            r->last_ckpt = moelat_step_count(r->lat);
        }
    }
    if (o->ckpt_dir && r->last_ckpt != moelat_step_count(r->lat) && save_checkpoint(r, o) != 0)
        return -1;
    return 0;
}

static int run_rank(rank_ctx *r, const moelat_config *cfg_in, const run_opts *o) {
    moelat_config cfg = *cfg_in;
    int me = r->rank;
    double w[256];
    if (o->slab_weights && slab_parse_weights(o->slab_weights, w, 256) != r->size) {
        if (me == 0)
            fprintf(stderr, "moelat-engine run: --slab-weights wants %d positive numbers (one per rank), got '%s'\n",
                    r->size, o->slab_weights);
        return 2;
    }
    char err[2048];
    if (moelat_slab_split(cfg.dims[2], r->size, o->slab_weights ? w : NULL, r->z0, r->z1, err, sizeof err) !=
        MOELAT_OK) {
        if (me == 0)
            fprintf(stderr, "moelat-engine run: %d ranks: %s\n", r->size, err);
        return 2;
    }
    /* Ranks on one node share its devices: local rank modulo their count. */
    MPI_Comm local;
    int lr = 0;
    if (mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &local),
                  "MPI_Comm_split_type", me) == 0) {
        if (mpi_check(MPI_Comm_rank(local, &lr), "MPI_Comm_rank", me))
            lr = me;
        MPI_Comm_free(&local);
    } else {
        lr = me;
    }
    if (!cfg.device[0] && cfg.mode != MOELAT_MODE_PERCELL) {
        int nd = moelat_device_count(err, sizeof err);
        if (nd > 0)
            snprintf(cfg.device, sizeof cfg.device, "%d", lr % nd);
    }
    int ok = moelat_lattice_create(&cfg, &r->lat, err, sizeof err) == MOELAT_OK;
    if (!ok)
        fprintf(stderr, "moelat-engine run: rank %d (device '%s'): %s\n", me, cfg.device, err);
    if (!all_ok(r, ok))
        return 1;
    r->halo = moelat_lattice_halo_depth(r->lat);
    r->plane = (size_t)cfg.dims[0] * cfg.dims[1] * (size_t)cfg.state_size;
    r->total = r->plane * (size_t)cfg.dims[2];
    r->buf = calloc(r->total, sizeof(float));
    ok = r->buf && moelat_lattice_set_active_planes(r->lat, r->z0[me], r->z1[me]) == MOELAT_OK;
    if (!ok)
        lat_error(r, r->buf ? "" : "out of memory for the staging buffer");
    if (!all_ok(r, ok) || load_inputs(r, &cfg, o) != 0)
        return 1;
    if (o->resume) {
        /* Every rank reads the checkpoint (the directory must be visible
         * to all of them, as on a shared filesystem). */
        ok = moelat_resume_checkpoint_ex(r->lat, o->resume, o->weights ? MOELAT_RESUME_KEEP_WEIGHTS : 0) ==
             MOELAT_OK;
        if (!ok)
            lat_error(r, "");
        if (!all_ok(r, ok))
            return 1;
    }
    /* A resume into its own directory need not save the step it read. */
    r->last_ckpt = o->resume && o->ckpt_dir && strcmp(o->resume, o->ckpt_dir) == 0 ? moelat_step_count(r->lat)
                                                                                   : UINT64_MAX;

    double *step_ms = calloc((size_t)(o->steps > 0 ? o->steps : 1), sizeof *step_ms);
    if (!all_ok(r, step_ms != NULL)) {
        free(step_ms);
        return 1;
    }
    double t0 = now_ms();
    int rc = run_steps(r, o, &cfg, step_ms) == 0 ? 0 : 1;
    double total_s = (now_ms() - t0) * 1e-3;
    /* A states file that cannot be written does not keep the output face
     * from being saved; rank 0 says what was written (run_checks.h). */
    run_saves sv = {0};
    int outputs_ok = rc == 0;
    if (rc == 0 && o->save_state) {
        int s = save_states(r, &cfg, o->save_state);
        if (me == 0)
            run_saves_note(&sv, "--save-state", o->save_state, s == 0 ? NULL : "");
        if (s != 0)
            rc = 1;
        outputs_ok = s != -1;
    }
    if (outputs_ok && o->save_outputs) {
        /* The output face z = Z-1 is the last rank's. */
        int last = r->size - 1, ok2 = 1;
        float *face = r->buf + (r->total - r->plane);
        if (me == last && moelat_lattice_get_planes(r->lat, cfg.dims[2] - 1, cfg.dims[2], face, r->plane) != MOELAT_OK) {
            lat_error(r, "");
            ok2 = 0;
        }
        ok2 = all_ok(r, ok2);
        if (ok2 && last != 0) {
            if (me == last)
                ok2 = send_floats(r, face, r->plane, 0, 3) == 0;
            else if (me == 0)
                ok2 = recv_floats(r, face, r->plane, last, 3) == 0;
        }
        if (ok2 && me == 0)
            ok2 = slab_write_outputs(&cfg, face, o->save_outputs) == 0;
        ok2 = all_ok(r, ok2);
        if (me == 0)
            run_saves_note(&sv, "--save-outputs", o->save_outputs, ok2 ? NULL : "");
        if (!ok2)
            rc = 1;
    }
    if (me == 0)
        run_saves_report(&sv);
    if (rc == 0) {
        /* Every rank's slab and report to rank 0 (same binary: bytes). */
        r->info.z0 = r->z0[me];
        r->info.z1 = r->z1[me];
        snprintf(r->info.device, sizeof r->info.device, "rank %d: %s", me, moelat_device_name(r->lat));
        moelat_report rep = MOELAT_REPORT_INIT;
        moelat_get_report(r->lat, &rep);
        moelat_slab_info *infos = me == 0 ? calloc((size_t)r->size, sizeof *infos) : NULL;
        moelat_report *reps = me == 0 ? calloc((size_t)r->size, sizeof *reps) : NULL;
        ok = all_ok(r, me != 0 || (infos && reps));
        if (ok)
            ok = !mpi_check(MPI_Gather(&r->info, (int)sizeof r->info, MPI_BYTE, infos, (int)sizeof r->info, MPI_BYTE, 0,
                                       MPI_COMM_WORLD),
                            "MPI_Gather", me) &&
                 !mpi_check(MPI_Gather(&rep, (int)sizeof rep, MPI_BYTE, reps, (int)sizeof rep, MPI_BYTE, 0,
                                       MPI_COMM_WORLD),
                            "MPI_Gather", me);
        if (all_ok(r, ok) && me == 0)
            slab_print_result(o->json, &cfg, "ranks", moelat_get_mode(r->lat), o->steps, total_s,
                              slab_median(step_ms, o->steps), r->halo, infos, reps, r->size);
        else if (!ok)
            rc = 1;
        free(infos);
        free(reps);
    }
    free(step_ms);
    return rc;
}

int run_mpi(const moelat_config *cfg, const run_opts *o) {
    /* Only the main thread calls MPI; a step runs on a thread of its own
     * (step_exchange) when the library allows that. */
    int provided = MPI_THREAD_SINGLE;
    if (mpi_check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", -1))
        return 1;
    /* Errors come back as codes, so every call can be checked and named. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rank_ctx r;
    memset(&r, 0, sizeof r);
    r.threads = provided >= MPI_THREAD_FUNNELED;
    int rc = 1;
    if (mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &r.rank), "MPI_Comm_rank", -1) == 0 &&
        mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &r.size), "MPI_Comm_size", r.rank) == 0) {
        r.z0 = calloc((size_t)r.size, sizeof *r.z0);
        r.z1 = calloc((size_t)r.size, sizeof *r.z1);
        if (r.z0 && r.z1)
            rc = run_rank(&r, cfg, o);
        else
            fprintf(stderr, "moelat-engine run: rank %d: out of memory\n", r.rank);
    }
    /* One exit code for all: the worst. */
    int worst = rc;
    if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        worst = rc ? rc : 1;
    moelat_lattice_destroy(r.lat);
    free(r.buf);
    free(r.z0);
    free(r.z1);
    MPI_Finalize();
    return worst;
}

/* ---- data-parallel training (train_ranks.h) ---- */

typedef struct train_ranks_ctx {
    int rank, size;
    double *all; /* size x count: every rank's values */
    size_t cap;
} train_ranks_ctx;

static train_ranks_ctx g_train_ranks;

/* The trainer's reduce: every rank's values gathered, summed in rank order
 * (the same order, so the same bits, on every rank and every run). */
static moelat_status train_reduce(void *user, double *v, size_t count) {
    train_ranks_ctx *c = user;
    if (count > (size_t)INT_MAX)
        return MOELAT_ERR_INVALID;
    if (c->cap < count * (size_t)c->size) {
        double *all = realloc(c->all, count * (size_t)c->size * sizeof *all);
        if (!all)
            return MOELAT_ERR_NOMEM;
        c->all = all;
        c->cap = count * (size_t)c->size;
    }
    if (mpi_check(MPI_Allgather(v, (int)count, MPI_DOUBLE, c->all, (int)count, MPI_DOUBLE, MPI_COMM_WORLD),
                  "MPI_Allgather", c->rank))
        return MOELAT_ERR_DEVICE;
    for (size_t k = 0; k < count; k++) {
        double s = 0.0;
        for (int r = 0; r < c->size; r++)
            s += c->all[(size_t)r * count + k];
        v[k] = s;
    }
    return MOELAT_OK;
}

int train_ranks_begin(moelat_train_params *p) {
    p->rank = 0;
    p->ranks = 1;
    if (!run_mpi_launched())
        return 0;
    int provided = 0;
    if (mpi_check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", -1))
        return -1;
    train_ranks_ctx *c = &g_train_ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    p->rank = c->rank;
    p->ranks = c->size;
    p->reduce = train_reduce;
    p->reduce_user = c;
    return c->rank;
}

void train_ranks_end(int rc) {
    if (!run_mpi_launched())
        return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized)
        return;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized)
        return;
    if (rc != 0 && g_train_ranks.size > 1)
        MPI_Abort(MPI_COMM_WORLD, rc);
    free(g_train_ranks.all);
    g_train_ranks.all = NULL;
    MPI_Finalize();
}
