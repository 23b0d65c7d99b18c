/*
 * quickstart.c: the README demo of libadam8bit.
 *
 * Trains a small MLP (64 -> 512 ReLU -> 10 softmax, label-smoothed cross-entropy, batch 32,
 * Adam lr 1e-3 with cosine decay) on the handwritten-digits table that ships
 * inside scikit-learn's wheel, twice from the same initial weights and the same minibatch order:
 *   - with 8-bit optimizer states (the library's defaults: both weight matrices have at least
 *     min_8bit_size = 4096 elements and get block-wise 8-bit state, the biases stay in fp32),
 *   - with fp32 states everywhere (the per-parameter override optim_bits = 32).
 * It prints both loss curves and the optimizer state memory, and asserts that the 8-bit run ends
 * within 1% of the fp32 run's training loss and within 1 point of its held-out accuracy.
 *
 * Forward and backward passes are plain C so that the only library in play is libadam8bit.
 *
 * Usage: quickstart [--data digits.csv] [--steps N] [--curve out.csv]
 *   --data   the table (default: $ADAM8BIT_DIGITS, else ~/.cache/adam8bit/digits.csv; fetch it
 *            with `python3 scripts/fetch_digits.py`)
 *   --steps  optimizer steps per run (default 600). With fewer steps (the valgrind run) the
 *            8-bit/fp32 comparison is not asserted, only that both runs learn.
 *   --curve  also write "step,loss_8bit,loss_fp32" rows for scripts/plot_loss.py
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adam8bit.h"

enum { FEATURES = 64, HIDDEN = 512, CLASSES = 10, ROWS = 1797, TRAIN = 1500, BATCH = 32 };
enum { DEFAULT_STEPS = 600, EVAL_EVERY = 50 };

/* Fail loudly: a demo that silently continues after an error teaches the wrong habit. */
#define CHECK(call)                                                                          \
    do {                                                                                     \
        bnb_status_t st_ = (call);                                                           \
        if (st_ != BNB_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,        \
                    bnb_status_name(st_), bnb_last_error_message());                         \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

typedef struct {
    float x[ROWS][FEATURES]; /* pixel intensities scaled to [0, 1] */
    int y[ROWS];
    int order[ROWS]; /* a fixed shuffle: the first TRAIN rows train, the rest are held out */
} dataset_t;

/* The four tensors of the MLP, each a flat array registered with the optimizer as one param. */
typedef struct {
    float *w1, *b1, *w2, *b2;
} mlp_t;

static const size_t NUMEL[4] = {HIDDEN * FEATURES, HIDDEN, CLASSES * HIDDEN, CLASSES};

/* xorshift64*: a tiny deterministic generator, so both runs and every machine see the same
 * initial weights and minibatches (rand() differs between C libraries). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double rng_uniform(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static int load_digits(const char *path, dataset_t *d) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr,
                "quickstart: cannot open the digits table %s.\n"
                "  It ships inside scikit-learn's wheel; fetch it (about 10 MB download, nothing is\n"
                "  installed) with:  python3 scripts/fetch_digits.py\n"
                "  or pass --data PATH / set ADAM8BIT_DIGITS.\n",
                path);
        return 0;
    }
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < FEATURES; c++) {
            int v;
            if (fscanf(f, "%d,", &v) != 1 || v < 0 || v > 16) goto bad;
            d->x[r][c] = (float)v / 16.0f;
        }
        if (fscanf(f, "%d", &d->y[r]) != 1 || d->y[r] < 0 || d->y[r] >= CLASSES) goto bad;
    }
    fclose(f);
    for (int i = 0; i < ROWS; i++) d->order[i] = i;
    for (int i = ROWS - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(rng_next() % (uint64_t)(i + 1));
        int t = d->order[i];
        d->order[i] = d->order[j];
        d->order[j] = t;
    }
    return 1;
bad:
    fprintf(stderr, "quickstart: %s is not the 1797-row digits table (64 values 0..16 and a label "
                    "per row); delete it and run python3 scripts/fetch_digits.py\n", path);
    fclose(f);
    return 0;
}

static float *tensor(size_t n) {
    float *p = calloc(n, sizeof(float));
    if (!p) {
        fprintf(stderr, "quickstart: out of memory\n");
        exit(1);
    }
    return p;
}

static void mlp_init(mlp_t *m) {
    m->w1 = tensor(NUMEL[0]);
    m->b1 = tensor(NUMEL[1]);
    m->w2 = tensor(NUMEL[2]);
    m->b2 = tensor(NUMEL[3]);
    /* He-uniform for the ReLU layer, Glorot-uniform for the softmax layer; biases start at 0. */
    double a1 = sqrt(6.0 / FEATURES), a2 = sqrt(6.0 / (HIDDEN + CLASSES));
    for (size_t i = 0; i < NUMEL[0]; i++) m->w1[i] = (float)((2 * rng_uniform() - 1) * a1);
    for (size_t i = 0; i < NUMEL[2]; i++) m->w2[i] = (float)((2 * rng_uniform() - 1) * a2);
}

static void mlp_copy(mlp_t *dst, const mlp_t *src) {
    memcpy(dst->w1, src->w1, NUMEL[0] * sizeof(float));
    memcpy(dst->b1, src->b1, NUMEL[1] * sizeof(float));
    memcpy(dst->w2, src->w2, NUMEL[2] * sizeof(float));
    memcpy(dst->b2, src->b2, NUMEL[3] * sizeof(float));
}

static void mlp_free(mlp_t *m) {
    free(m->w1);
    free(m->b1);
    free(m->w2);
    free(m->b2);
}

/* Label smoothing 0.1: the target puts 0.9 + 0.01 on the label and 0.01 on every other class.
 * Besides being common practice, it gives the loss a floor (about 0.5) instead of letting it
 * sink towards 0 as the net memorises 1500 images; near 0 a relative "within 1%" compares
 * noise, above a floor it compares how well the two optimizers minimised the same objective. */
#define SMOOTHING 0.1f
static float target(int k, int y) { return SMOOTHING / CLASSES + (k == y ? 1 - SMOOTHING : 0); }

/* Forward pass of one sample: hidden activations h and softmax probabilities p.
 * Returns the (label-smoothed) cross-entropy loss for label y. */
static double forward(const mlp_t *m, const float *x, int y, float *h, float *p) {
    for (int j = 0; j < HIDDEN; j++) {
        float s = m->b1[j];
        const float *w = m->w1 + (size_t)j * FEATURES;
        for (int i = 0; i < FEATURES; i++) s += w[i] * x[i];
        h[j] = s > 0 ? s : 0;
    }
    float zmax = -INFINITY, z[CLASSES];
    for (int k = 0; k < CLASSES; k++) {
        float s = m->b2[k];
        const float *w = m->w2 + (size_t)k * HIDDEN;
        for (int j = 0; j < HIDDEN; j++) s += w[j] * h[j];
        z[k] = s;
        if (s > zmax) zmax = s;
    }
    double sum = 0, loss = 0;
    for (int k = 0; k < CLASSES; k++) sum += exp((double)(z[k] - zmax));
    for (int k = 0; k < CLASSES; k++) {
        p[k] = (float)(exp((double)(z[k] - zmax)) / sum);
        loss -= target(k, y) * ((double)(z[k] - zmax) - log(sum));
    }
    return loss;
}

/* Mean loss and accuracy over rows [from, to) of the shuffled order. */
static void evaluate(const mlp_t *m, const dataset_t *d, int from, int to, double *loss,
                     double *acc) {
    float h[HIDDEN], p[CLASSES];
    double total = 0;
    int right = 0;
    for (int r = from; r < to; r++) {
        int row = d->order[r];
        total += forward(m, d->x[row], d->y[row], h, p);
        int best = 0;
        for (int k = 1; k < CLASSES; k++)
            if (p[k] > p[best]) best = k;
        right += best == d->y[row];
    }
    *loss = total / (to - from);
    *acc = 100.0 * right / (to - from);
}

/* Mean gradient of the cross-entropy over one minibatch, written into g (zeroed first). */
static void backward(const mlp_t *m, const dataset_t *d, const int *rows, int n, mlp_t *g) {
    float h[HIDDEN], p[CLASSES], dh[HIDDEN];
    memset(g->w1, 0, NUMEL[0] * sizeof(float));
    memset(g->b1, 0, NUMEL[1] * sizeof(float));
    memset(g->w2, 0, NUMEL[2] * sizeof(float));
    memset(g->b2, 0, NUMEL[3] * sizeof(float));
    for (int b = 0; b < n; b++) {
        const float *x = d->x[rows[b]];
        int y = d->y[rows[b]];
        forward(m, x, y, h, p);
        memset(dh, 0, sizeof dh);
        for (int k = 0; k < CLASSES; k++) {
            float dz = (p[k] - target(k, y)) / (float)n; /* d(mean CE)/d logit */
            g->b2[k] += dz;
            float *gw = g->w2 + (size_t)k * HIDDEN;
            const float *w = m->w2 + (size_t)k * HIDDEN;
            for (int j = 0; j < HIDDEN; j++) {
                gw[j] += dz * h[j];
                dh[j] += dz * w[j];
            }
        }
        for (int j = 0; j < HIDDEN; j++) {
            if (h[j] <= 0) continue; /* ReLU passes no gradient where it was off */
            g->b1[j] += dh[j];
            float *gw = g->w1 + (size_t)j * FEATURES;
            for (int i = 0; i < FEATURES; i++) gw[i] += dh[j] * x[i];
        }
    }
}

typedef struct {
    double curve[DEFAULT_STEPS / EVAL_EVERY + 64]; /* train loss at step 0, EVAL_EVERY, ... */
    int points;
    double final_loss, heldout_acc;
    uint64_t state_bytes;
} run_result_t;

/* One training run. fp32_states selects the optim_bits = 32 override for every parameter. */
static void train(const dataset_t *d, const mlp_t *init, int steps, int fp32_states,
                  run_result_t *out) {
    bnb_adam8bit_config_t cfg;
    CHECK(bnb_adam8bit_config_default(&cfg, sizeof cfg)); /* lr 1e-3, betas .9/.999 */
    bnb_adam8bit_t *opt = NULL;
    CHECK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &opt));

    bnb_param_options_t po;
    CHECK(bnb_param_options_default(&po, sizeof po));
    if (fp32_states) {
        po.flags |= BNB_OPT_OPTIM_BITS;
        po.optim_bits = 32;
    }
    uint32_t ids[4];
    for (int t = 0; t < 4; t++)
        CHECK(bnb_adam8bit_add_param_ex(opt, NUMEL[t], BNB_DTYPE_F32, &po, &ids[t]));

    out->state_bytes = 0;
    for (int t = 0; t < 4; t++) {
        bnb_param_info_t info;
        CHECK(bnb_adam8bit_param_info(opt, ids[t], &info, sizeof info));
        /* The 8-bit run must really use 8-bit state for the matrices and fp32 for the biases;
         * otherwise the comparison below would prove nothing. */
        bnb_path_t want = (fp32_states || NUMEL[t] < cfg.min_8bit_size) ? BNB_PATH_FP32
                                                                        : BNB_PATH_BLOCKWISE8;
        if (info.path != want) {
            fprintf(stderr, "quickstart: parameter %d got path %d, expected %d\n", t,
                    (int)info.path, (int)want);
            exit(1);
        }
        out->state_bytes += info.state_bytes;
    }

    mlp_t m, g;
    m.w1 = tensor(NUMEL[0]), m.b1 = tensor(NUMEL[1]), m.w2 = tensor(NUMEL[2]),
    m.b2 = tensor(NUMEL[3]);
    g.w1 = tensor(NUMEL[0]), g.b1 = tensor(NUMEL[1]), g.w2 = tensor(NUMEL[2]),
    g.b2 = tensor(NUMEL[3]);
    mlp_copy(&m, init);

    bnb_step_item_t items[4] = {
        {ids[0], m.w1, g.w1}, {ids[1], m.b1, g.b1}, {ids[2], m.w2, g.w2}, {ids[3], m.b2, g.b2}};
    int rows[BATCH];
    uint64_t saved_rng = rng_state;
    rng_state = 12345; /* the same minibatch sequence in both runs */
    double acc;
    out->points = 0;
    for (int s = 0; s <= steps; s++) {
        if (s % EVAL_EVERY == 0 || s == steps) {
            double loss;
            evaluate(&m, d, 0, TRAIN, &loss, &acc);
            out->curve[out->points++] = loss;
            printf("  step %4d  train loss %.5f\n", s, loss);
        }
        if (s == steps) break;
        for (int b = 0; b < BATCH; b++) rows[b] = d->order[rng_next() % TRAIN];
        backward(&m, d, rows, BATCH, &g);
        /* Cosine decay from lr to 0, the way a scheduler drives the handle: set_lr changes
         * every group's rate for the next step. */
        CHECK(bnb_adam8bit_set_lr(opt, cfg.lr * 0.5 * (1 + cos(3.14159265358979 * s / steps))));
        /* All four tensors in one call: one parallel sweep over the CPU workers. */
        CHECK(bnb_adam8bit_step_many(opt, items, 4, NULL));
    }
    rng_state = saved_rng;
    evaluate(&m, d, 0, TRAIN, &out->final_loss, &acc);
    evaluate(&m, d, TRAIN, ROWS, &acc, &out->heldout_acc);
    mlp_free(&m);
    mlp_free(&g);
    bnb_adam8bit_destroy(opt);
}

int main(int argc, char **argv) {
    const char *data = getenv("ADAM8BIT_DIGITS");
    const char *curve_path = NULL;
    char default_path[4096];
    int steps = DEFAULT_STEPS;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--curve") && i + 1 < argc) curve_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--data digits.csv] [--steps N] [--curve out.csv]\n",
                    argv[0]);
            return 2;
        }
    }
    if (steps < 1 || steps > DEFAULT_STEPS) {
        fprintf(stderr, "quickstart: --steps must lie in 1..%d\n", DEFAULT_STEPS);
        return 2;
    }
    if (!data) {
        const char *home = getenv("HOME");
        snprintf(default_path, sizeof default_path, "%s/.cache/adam8bit/digits.csv",
                 home ? home : ".");
        data = default_path;
    }

    dataset_t *d = malloc(sizeof *d);
    if (!d || !load_digits(data, d)) {
        free(d);
        return 1;
    }
    printf("libadam8bit %s: MLP %d-%d-%d on %d digits (%d train, %d held out), %d steps\n",
           bnb_adam8bit_version(), FEATURES, HIDDEN, CLASSES, ROWS, TRAIN, ROWS - TRAIN, steps);

    mlp_t init;
    mlp_init(&init);
    run_result_t r8, r32;
    printf("8-bit states (block-wise, the default):\n");
    train(d, &init, steps, 0, &r8);
    printf("fp32 states (optim_bits = 32 for every parameter):\n");
    train(d, &init, steps, 1, &r32);
    mlp_free(&init);
    free(d);

    printf("\n%-6s %12s %12s %14s\n", "states", "train loss", "held-out %", "state bytes");
    printf("%-6s %12.5f %12.2f %14llu\n", "8-bit", r8.final_loss, r8.heldout_acc,
           (unsigned long long)r8.state_bytes);
    printf("%-6s %12.5f %12.2f %14llu\n", "fp32", r32.final_loss, r32.heldout_acc,
           (unsigned long long)r32.state_bytes);
    printf("8-bit state is %.1f%% of fp32 state\n", 100.0 * r8.state_bytes / r32.state_bytes);

    if (curve_path) {
        FILE *f = fopen(curve_path, "w");
        if (!f) {
            perror(curve_path);
            return 1;
        }
        fprintf(f, "step,loss_8bit,loss_fp32\n");
        for (int i = 0; i < r8.points; i++)
            fprintf(f, "%d,%.6f,%.6f\n", i * EVAL_EVERY < steps ? i * EVAL_EVERY : steps,
                    r8.curve[i], r32.curve[i]);
        fclose(f);
    }

    int ok = 1;
    /* Both runs must actually learn: the initial loss is about 2.4, the floor about 0.5; the
     * full run ends near 0.6, a shortened one (cosine-decayed over fewer steps) still falls. */
    double keep = steps == DEFAULT_STEPS ? 0.5 : 0.9;
    if (!(r8.final_loss < keep * r8.curve[0] && r32.final_loss < keep * r32.curve[0])) {
        fprintf(stderr, "FAIL: a run's loss did not fall below %.0f%% of its start (8-bit %.4f "
                        "-> %.4f, fp32 %.4f -> %.4f)\n", 100 * keep, r8.curve[0],
                r8.final_loss, r32.curve[0], r32.final_loss);
        ok = 0;
    }
    /* The matrices dominate: 2 bytes per element in 8 bit (m and v codes, plus two f32 absmax
     * per 256 elements) against 8 bytes per element in fp32, so well under a third overall. */
    if (!(r8.state_bytes * 3 < r32.state_bytes)) {
        fprintf(stderr, "FAIL: 8-bit state (%llu bytes) is not under a third of fp32 state "
                        "(%llu bytes)\n", (unsigned long long)r8.state_bytes,
                (unsigned long long)r32.state_bytes);
        ok = 0;
    }
    if (steps == DEFAULT_STEPS) {
        double rel = fabs(r8.final_loss - r32.final_loss) / r32.final_loss;
        double dacc = fabs(r8.heldout_acc - r32.heldout_acc);
        printf("8-bit vs fp32: final loss differs by %.3f%% (limit 1%%), held-out accuracy by "
               "%.2f points (limit 1)\n", 100 * rel, dacc);
        if (!(rel <= 0.01)) {
            fprintf(stderr, "FAIL: 8-bit final loss is not within 1%% of fp32\n");
            ok = 0;
        }
        if (!(dacc <= 1.0)) {
            fprintf(stderr, "FAIL: 8-bit held-out accuracy is not within 1 point of fp32\n");
            ok = 0;
        }
    } else {
        printf("(shortened run: the 1%% comparison needs the full %d steps)\n", DEFAULT_STEPS);
    }
    printf(ok ? "quickstart: OK\n" : "quickstart: FAILED\n");
    return ok ? 0 : 1;
}
