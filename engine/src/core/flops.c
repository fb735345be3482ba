/* Useful FLOPs of one step, for roofline figures (bench).
 *
 * A multiply-add counts 2, any other arithmetic operation or special
 * function 1. Neighbour counts are exact for the lattice (offsets clipped at
 * the boundary), averaged per cell. The count is of the formulation the
 * batched path runs: the functional expert's message layer L(2S->hd) applied
 * to [n_j, x] is split into a per-cell projection of every state (2 S hd
 * per cell, once per step) plus the x half once per cell, and its
 * message layer W_2 (linear) moves out of the sum over edges (M = W_2
 * sum_j a_j h_j + b_2, attention through C = A_m W_2): an edge costs the
 * add and GELU of h_j, one md x hd layer, md tanh, the online softmax and
 * the weighted sum of h_j (functional.cl). Aggregation runs by row prefix
 * sums (moelat_step.cl): 3 S per cell for the prefix sums of n and |n|,
 * then per run of one band in one row a difference and an add for each,
 * 4 S; runs is their mean in-lattice number per cell (526 at r = 8 in the
 * interior, against 2102 neighbours).
 *
 * Per cell, with band counts cL, cF, cD (c = their sum), E = 16, K = CNF
 * steps (2K evaluations in lipschitz mode), and
 *   dense(a, b) = 2ab + b,  LN(n) = 8n,  CNF(S, H) per evaluation =
 *   LN(2S) + dense(2S, H) + dense(H, H/2) + dense(H/2, S) + 1.5H (GELU)
 *   + LN(S) + H/4 + 4S:
 *   aggregation   3 S + 4 S runs + 7 S
 *   local         cL (4S + 1) + dense(S,h1) + dense(h1,h2) + dense(S+h2,ph)
 *                 + dense(ph,S) + h1 + ph + LN(S) + 3S
 *   functional    cF (2hd + 2 hd md + md + 2md + 5 + 2hd)
 *                 + 2 S hd (projection) + dense(S, hd) + dense(S, md)
 *                 + dense(hd, md)
 *                 + dense(2S, S/2) + dense(S/2, 1) + 3 dense(S+md+E, S)
 *                 + K CNF(S, H) + dense(2S, S) + LN(S) + 8S
 *   distant       K CNF(S, H)
 *   gate          LN(S) + dense(2S, gh) + gh + dense(gh, 3) + 6 + 6S
 */
#include"core/lattice_internal.h"

static double dense(double a, double b) { return 2 * a * b + b; }
static double ln(double n) { return 8 * n; }

static double cnf(double S, double H) {
    return ln(2 * S) + dense(2 * S, H) + dense(H, H / 2) + dense(H / 2, S) + 1.5 * H + ln(S) + H / 4 + 4 * S;
}

/* Mean number of in-lattice neighbours per cell of band k. */
static double mean_count(const moelat_lattice *lat, int k) {
    double total = 0;
    const ml_offset *o = lat->stencil.band[k];
    for (int j = 0; j < lat->stencil.count[k]; j++) {
        double ax = lat->X - (o[j].dx < 0 ? -o[j].dx : o[j].dx);
        double ay = lat->Y - (o[j].dy < 0 ? -o[j].dy : o[j].dy);
        double az = lat->Z - (o[j].dz < 0 ? -o[j].dz : o[j].dz);
        if (ax > 0 && ay > 0 && az > 0)
            total += ax * ay * az;
    }
    return total / (double)lat->N;
}

/* Mean number of in-lattice runs per cell: maximal sets of one band's
 * offsets with equal (dy, dz) and consecutive dx, as the engine's run table
 * has them. The stencil lists offsets z, y, x-innermost (stencil.c), so a
 * run is a stretch of consecutive entries. A run counts for a cell when its
 * row is in the lattice and its clipped dx range is not empty. */
static double mean_runs(const moelat_lattice *lat) {
    double total = 0;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        const ml_offset *o = lat->stencil.band[k];
        int n = lat->stencil.count[k];
        for (int j = 0; j < n;) {
            int e = j;
            while (e + 1 < n && o[e + 1].dy == o[j].dy && o[e + 1].dz == o[j].dz && o[e + 1].dx == o[e].dx + 1)
                e++;
            double ay = lat->Y - (o[j].dy < 0 ? -o[j].dy : o[j].dy);
            double az = lat->Z - (o[j].dz < 0 ? -o[j].dz : o[j].dz);
            /* cells x with x + dx_first <= X - 1 and x + dx_last >= 0 */
            int lo = -o[e].dx > 0 ? -o[e].dx : 0;
            int hi = lat->X - 1 - o[j].dx < lat->X - 1 ? lat->X - 1 - o[j].dx : lat->X - 1;
            double ax = hi >= lo ? hi - lo + 1 : 0;
            if (ax > 0 && ay > 0 && az > 0)
                total += ax * ay * az;
            j = e + 1;
        }
    }
    return total / (double)lat->N;
}

double ml_flops_per_cell(const moelat_lattice *lat, double part[5]) {
    double S = lat->S, E = lat->E;
    double cL = mean_count(lat, 0), cF = mean_count(lat, 1), cD = mean_count(lat, 2);
    double evals = lat->cfg.cnf_steps * (lat->cfg.cnf_mode == MOELAT_CNF_LIPSCHITZ ? 2.0 : 1.0);
    double h1 = moelat_config_hidden(&lat->cfg, "h1", 12), h2 = moelat_config_hidden(&lat->cfg, "h2", 12);
    double ph = moelat_config_hidden(&lat->cfg, "ph", 12), hd = moelat_config_hidden(&lat->cfg, "hd", 12);
    double md = moelat_config_hidden(&lat->cfg, "md", 8), H = moelat_config_hidden(&lat->cfg, "ode_hidden", 48);
    double gh = lat->gate_hidden;
    double p[5];
    p[0] = 3 * S + 4 * S * mean_runs(lat) + 7 * S;
    p[1] = cL > 0 ? cL * (4 * S + 1) + dense(S, h1) + dense(h1, h2) + dense(S + h2, ph) + dense(ph, S) + h1 + ph +
                        ln(S) + 3 * S
                  : 0;
    p[2] = cF > 0 ? cF * (4 * hd + 2 * hd * md + 3 * md + 5) + 2 * S * hd + dense(S, hd) + dense(S, md) + dense(hd, md) +
                        dense(2 * S, S / 2) + dense(S / 2, 1) + 3 * dense(S + md + E, S) + evals * cnf(S, H) +
                        dense(2 * S, S) + ln(S) + 8 * S
                  : 0;
    p[3] = cD > 0 ? evals * cnf(S, H) : 0;
    p[4] = ln(S) + dense(2 * S, gh) + gh + dense(gh, 3) + 6 + 6 * S;
    double total = 0;
    for (int i = 0; i < 5; i++) {
        total += p[i];
        if (part)
            part[i] = p[i];
    }
    return total;
}
