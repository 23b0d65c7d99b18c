/* zero1_mpi.c: data-parallel training with optimizer-state sharding (ZeRO stage 1) on MPI.
 *
 * Every rank holds all parameters, computes gradients on its own data, and then
 *   1. all-reduces the gradients (sum, then the mean's exact factor 1/2),
 *   2. steps only its own shard of every flattened tensor with libadam8bit (the slices of
 *      bnb_shard_range, registered with BNB_OPT_SHARD): each rank keeps 1/world of the state,
 *   3. all-gathers the updated slices so every rank has the full parameters again.
 * Block-wise 8-bit Adam is per 256-element block, and the shards are cut on block boundaries,
 * so this equals one process stepping whole tensors bit for bit. Rank 0 runs that
 * single-process optimizer alongside and asserts equality after every step.
 *
 * At the end every rank saves its shard checkpoint; rank 0 merges them with
 * bnb_checkpoint_merge into a single-process checkpoint, loads it into a fresh whole-tensor
 * handle and asserts that every state array equals the single-process run's, then takes one
 * more step with both and compares again.
 *
 * Exactness of step 1 with 2 ranks: a + b == b + a in IEEE arithmetic, so the all-reduced sum
 * does not depend on MPI's reduction order. With more ranks it may (addition is not
 * associative); a real trainer that needs bit-exact runs fixes the order (e.g. a gather and a
 * sum in rank order).
 *
 * With --bf16-stochastic the parameters (and the gradients handed to the step) are bf16 and
 * rounded stochastically (DECISIONS rule 19): the draws depend on the element's index in the
 * full tensor, not in the shard, and every rank derives the same default key for a tensor,
 * so the sharded run still equals the single-process one bit for bit.
 *
 * Usage: mpirun -np 2 zero1_mpi CHECKPOINT_PREFIX [--bf16-stochastic]
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adam8bit.h"

enum { TENSORS = 3, STEPS = 30 };
/* One tensor on the 8-bit path with whole blocks, one on the fp32 path (below min_8bit_size),
 * one on the 8-bit path whose last block is partial. */
static const uint64_t NUMEL[TENSORS] = {16384, 1000, 5000};

static int rank, world;
/* The parameters' element type (fp32, or bf16 with --bf16-stochastic) and its size. */
static bnb_dtype_t dtype = BNB_DTYPE_F32;
static size_t esz = 4;

#define CHECK(call)                                                                          \
    do {                                                                                     \
        bnb_status_t st_ = (call);                                                           \
        if (st_ != BNB_OK) {                                                                 \
            fprintf(stderr, "rank %d: %s:%d: %s failed: %s (%s)\n", rank, __FILE__, __LINE__, \
                    #call, bnb_status_name(st_), bnb_last_error_message());                  \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                    \
        }                                                                                    \
    } while (0)

#define ASSERT(cond, ...)                                                                    \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "rank %d: FAIL: ", rank);                                        \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, "\n");                                                           \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                    \
        }                                                                                    \
    } while (0)

/* A deterministic value in [0, 1) for (seed, i): every rank can recompute any rank's data. */
static float unit(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (float)((z ^ (z >> 31)) >> 40) / 16777216.0f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* To nearest, ties to even (the gradients here are finite). */
static uint16_t float_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Element i of a parameter buffer of the run's dtype, as a float. */
static float elem(const void *buf, uint64_t i) {
    if (dtype == BNB_DTYPE_F32) return ((const float *)buf)[i];
    return bf16_to_float(((const uint16_t *)buf)[i]);
}

static void set_elem(void *buf, uint64_t i, float x) {
    if (dtype == BNB_DTYPE_F32)
        ((float *)buf)[i] = x;
    else
        ((uint16_t *)buf)[i] = float_to_bf16(x);
}

/* Rank r's loss at step s is 0.5 * sum_i a_i (p_i - t_i)^2 with its own data weights a_i: a
 * weighted least-squares fit to a fixed target t. Its gradient is a_i (p_i - t_i). */
static void local_grad(int r, int s, int t, const void *p, float *g, double *loss) {
    for (uint64_t i = 0; i < NUMEL[t]; i++) {
        float a = unit((uint64_t)(1000 * r + s) * 7 + (uint64_t)t, i) * 2.0f;
        float d = elem(p, i) - (unit(99 + (uint64_t)t, i) - 0.5f);
        g[i] = a * d;
        *loss += 0.5 * a * d * d;
    }
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    ASSERT(p, "out of memory");
    return p;
}

/* Every state array of every parameter of h, concatenated: equal buffers = equal state. */
static unsigned char *all_state(const bnb_adam8bit_t *h, size_t *len) {
    uint32_t n;
    CHECK(bnb_adam8bit_num_params(h, &n));
    size_t total = 0;
    unsigned char *buf = NULL;
    for (uint32_t id = 0; id < n; id++) {
        for (bnb_state_kind_t k = BNB_STATE1; k <= BNB_UNORM_VEC; k++) {
            uint64_t bytes;
            if (bnb_adam8bit_state_size(h, id, k, &bytes) != BNB_OK) continue; /* not kept */
            buf = realloc(buf, total + bytes + sizeof(uint64_t));
            ASSERT(buf, "out of memory");
            CHECK(bnb_adam8bit_read_state(h, id, k, buf + total, bytes));
            total += bytes;
        }
        bnb_param_info_t info;
        CHECK(bnb_adam8bit_param_info(h, id, &info, sizeof info));
        memcpy(buf + total, &info.step, sizeof info.step);
        total += sizeof info.step;
    }
    *len = total;
    return buf;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    int stochastic = argc == 3 && strcmp(argv[2], "--bf16-stochastic") == 0;
    ASSERT(argc == 2 || stochastic, "usage: mpirun -np 2 %s CHECKPOINT_PREFIX [--bf16-stochastic]",
           argv[0]);
    if (stochastic) {
        dtype = BNB_DTYPE_BF16;
        esz = 2;
    }
    ASSERT(world == 2, "run with 2 ranks (got %d); see the comment on exactness", world);
    /* The library's CPU workers would compete with the other rank for the same cores. */
    CHECK(bnb_set_num_threads(1));

    bnb_adam8bit_config_t cfg;
    CHECK(bnb_adam8bit_config_default(&cfg, sizeof cfg));
    cfg.lr = 1e-2;
    cfg.stochastic_rounding = stochastic;
    cfg.seed = 20261203;
    bnb_adam8bit_t *shard_opt = NULL, *full_opt = NULL;
    CHECK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &shard_opt));

    /* p: parameters (dtype); g: gradients, reduced in fp32; gx: g in the step's dtype. */
    unsigned char *p[TENSORS], *gx[TENSORS], *ref_p[TENSORS] = {0}, *tmp = xmalloc(NUMEL[0] * 4);
    float *g[TENSORS];
    uint64_t key[TENSORS] = {0};
    uint64_t off[TENSORS][2], len[TENSORS][2];
    uint32_t shard_id[TENSORS];
    int counts[TENSORS][2], displs[TENSORS][2];
    size_t my_state = 0;
    for (int t = 0; t < TENSORS; t++) {
        p[t] = xmalloc(NUMEL[t] * esz);
        gx[t] = xmalloc(NUMEL[t] * esz);
        g[t] = xmalloc(NUMEL[t] * 4);
        for (uint64_t i = 0; i < NUMEL[t]; i++) set_elem(p[t], i, unit(7 + (uint64_t)t, i) - 0.5f);
        for (int r = 0; r < world; r++) {
            CHECK(bnb_shard_range(NUMEL[t], (uint32_t)r, (uint32_t)world, &off[t][r], &len[t][r]));
            counts[t][r] = (int)(len[t][r] * esz); /* the gathers move bytes */
            displs[t][r] = (int)(off[t][r] * esz);
        }
        ASSERT(len[t][0] + len[t][1] == NUMEL[t] && off[t][0] == 0 && off[t][1] == len[t][0],
               "shards of tensor %d do not tile it", t);
        if (len[t][rank] > 0) {
            bnb_param_options_t o;
            CHECK(bnb_param_options_default(&o, sizeof o));
            o.flags = BNB_OPT_SHARD;
            o.shard_full_numel = NUMEL[t];
            o.shard_offset = off[t][rank];
            CHECK(bnb_adam8bit_add_param_ex(shard_opt, len[t][rank], dtype, &o, &shard_id[t]));
            bnb_param_info_t info;
            CHECK(bnb_adam8bit_param_info(shard_opt, shard_id[t], &info, sizeof info));
            /* The path follows the full tensor's size, so both ranks agree on it. */
            ASSERT(info.path == (NUMEL[t] < cfg.min_8bit_size ? BNB_PATH_FP32
                                                              : BNB_PATH_BLOCKWISE8),
                   "tensor %d shard got path %d", t, (int)info.path);
            ASSERT(info.stochastic_rounding == stochastic, "tensor %d: stochastic rounding", t);
            key[t] = info.rounding_key;
            my_state += info.state_bytes;
        }
    }
    if (rank == 0) { /* the single-process reference: whole tensors, one handle */
        CHECK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &full_opt));
        for (int t = 0; t < TENSORS; t++) {
            uint32_t id;
            CHECK(bnb_adam8bit_add_param(full_opt, NUMEL[t], dtype, &id));
            ref_p[t] = xmalloc(NUMEL[t] * esz);
            memcpy(ref_p[t], p[t], NUMEL[t] * esz);
        }
    }
    /* Rule 19's default key of a tensor is the same on every rank and in one process. */
    uint64_t keys[2][TENSORS];
    MPI_Gather(key, TENSORS, MPI_UINT64_T, keys, TENSORS, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (rank == 0)
        for (uint32_t t = 0; t < TENSORS; t++) {
            bnb_param_info_t info;
            CHECK(bnb_adam8bit_param_info(full_opt, t, &info, sizeof info));
            ASSERT(keys[0][t] == info.rounding_key && keys[1][t] == info.rounding_key,
                   "tensor %u: the ranks' rounding keys differ from the single process's", t);
        }

    double first_loss = 0, loss = 0;
    for (int s = 0; s <= STEPS; s++) {
        /* forward/backward on this rank's data */
        double local = 0;
        for (int t = 0; t < TENSORS; t++) local_grad(rank, s, t, p[t], g[t], &local);
        MPI_Allreduce(&local, &loss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (s == 0) first_loss = loss;
        if (s == STEPS) break;
        if (rank == 0 && s % 10 == 0) printf("step %2d  loss %.6f\n", s, loss);

        /* 1. all-reduce: the mean gradient over the two ranks' data */
        for (int t = 0; t < TENSORS; t++) {
            MPI_Allreduce(MPI_IN_PLACE, g[t], (int)NUMEL[t], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            for (uint64_t i = 0; i < NUMEL[t]; i++) {
                g[t][i] *= 0.5f; /* exact */
                set_elem(gx[t], i, g[t][i]);
            }
        }
        /* 2. step this rank's shards in one call */
        bnb_step_item_t items[TENSORS];
        size_t n = 0;
        for (int t = 0; t < TENSORS; t++)
            if (len[t][rank] > 0)
                items[n++] = (bnb_step_item_t){shard_id[t], p[t] + off[t][rank] * esz,
                                               gx[t] + off[t][rank] * esz};
        CHECK(bnb_adam8bit_step_many(shard_opt, items, n, NULL));
        /* 3. all-gather the updated slices */
        for (int t = 0; t < TENSORS; t++) {
            memcpy(tmp, p[t] + off[t][rank] * esz, len[t][rank] * esz);
            MPI_Allgatherv(tmp, counts[t][rank], MPI_BYTE, p[t], counts[t], displs[t], MPI_BYTE,
                           MPI_COMM_WORLD);
        }
        /* the reference steps whole tensors with the same reduced gradient */
        if (rank == 0) {
            bnb_step_item_t all[TENSORS];
            for (int t = 0; t < TENSORS; t++) all[t] = (bnb_step_item_t){(uint32_t)t, ref_p[t], gx[t]};
            CHECK(bnb_adam8bit_step_many(full_opt, all, TENSORS, NULL));
            for (int t = 0; t < TENSORS; t++)
                ASSERT(memcmp(ref_p[t], p[t], NUMEL[t] * esz) == 0,
                       "step %d: tensor %d differs from the single-process run", s + 1, t);
        }
    }
    ASSERT(loss < 0.5 * first_loss, "loss %.6f did not halve from %.6f", loss, first_loss);

    /* Checkpoint: one file per rank, merged into the single-process layout. */
    char path[4096];
    snprintf(path, sizeof path, "%s.rank%d.safetensors", argv[1], rank);
    CHECK(bnb_adam8bit_save(shard_opt, path));
    unsigned long long state_sum = 0, mine = my_state;
    MPI_Reduce(&mine, &state_sum, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD); /* every shard file is complete before rank 0 reads it */
    if (rank == 0) {
        char p0[4096], p1[4096], merged[4096];
        snprintf(p0, sizeof p0, "%s.rank0.safetensors", argv[1]);
        snprintf(p1, sizeof p1, "%s.rank1.safetensors", argv[1]);
        snprintf(merged, sizeof merged, "%s.merged.safetensors", argv[1]);
        const char *const shards[2] = {p0, p1};
        CHECK(bnb_checkpoint_merge(shards, 2, merged));

        bnb_adam8bit_t *loaded = NULL;
        CHECK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &loaded));
        for (int t = 0; t < TENSORS; t++) {
            uint32_t id;
            CHECK(bnb_adam8bit_add_param(loaded, NUMEL[t], dtype, &id));
        }
        CHECK(bnb_adam8bit_load(loaded, merged));
        size_t la, lb;
        unsigned char *a = all_state(full_opt, &la), *b = all_state(loaded, &lb);
        ASSERT(la == lb && memcmp(a, b, la) == 0,
               "the merged checkpoint differs from the single-process state");
        free(a);
        free(b);

        /* One more step from the merged checkpoint equals one more step of the reference. */
        unsigned char *q[TENSORS];
        bnb_step_item_t ia[TENSORS], ib[TENSORS];
        for (int t = 0; t < TENSORS; t++) {
            double unused = 0;
            q[t] = xmalloc(NUMEL[t] * esz);
            memcpy(q[t], ref_p[t], NUMEL[t] * esz);
            local_grad(0, STEPS, t, ref_p[t], g[t], &unused);
            for (uint64_t i = 0; i < NUMEL[t]; i++) set_elem(gx[t], i, g[t][i]);
            ia[t] = (bnb_step_item_t){(uint32_t)t, ref_p[t], gx[t]};
            ib[t] = (bnb_step_item_t){(uint32_t)t, q[t], gx[t]};
        }
        CHECK(bnb_adam8bit_step_many(full_opt, ia, TENSORS, NULL));
        CHECK(bnb_adam8bit_step_many(loaded, ib, TENSORS, NULL));
        for (int t = 0; t < TENSORS; t++) {
            ASSERT(memcmp(q[t], ref_p[t], NUMEL[t] * esz) == 0,
                   "a step after loading the merged checkpoint differs (tensor %d)", t);
            free(q[t]);
        }
        uint64_t full_state = 0;
        for (uint32_t t = 0; t < TENSORS; t++) {
            bnb_param_info_t info;
            CHECK(bnb_adam8bit_param_info(full_opt, t, &info, sizeof info));
            full_state += info.state_bytes;
        }
        printf("step %2d  loss %.6f (from %.6f)\n", STEPS, loss, first_loss);
        printf("optimizer state: %llu bytes on rank 0, %llu on both ranks together, %llu in "
               "one process\n", (unsigned long long)my_state, state_sum,
               (unsigned long long)full_state);
        printf("zero1_mpi (%s): %d steps on %d ranks equal the single-process run bit for bit; "
               "the merged checkpoint loads and continues identically: OK\n",
               stochastic ? "bf16, stochastic rounding" : "fp32", STEPS, world);
        bnb_adam8bit_destroy(loaded);
        bnb_adam8bit_destroy(full_opt);
        for (int t = 0; t < TENSORS; t++) free(ref_p[t]);
        remove(p0);
        remove(p1);
        remove(merged);
    }
    for (int t = 0; t < TENSORS; t++) {
        free(p[t]);
        free(g[t]);
        free(gx[t]);
    }
    free(tmp);
    bnb_adam8bit_destroy(shard_opt);
    MPI_Finalize();
    return 0;
}
