/* abi_test.c: the C ABI end to end, as a C program linked against the built library sees it
 * (issue 2). Covers every function of adam8bit.h on its success path with asserted values:
 * versions, defaults and presets, parameter registration on each path, exact state sizes,
 * param_info, a first Adam step checked against the closed form, step vs step_many, learning
 * rates per group, state read/write, step counters, and thread-count determinism.
 * Misuse (bad arguments of every class) is bad_input.c's job. */
#include <math.h>
#include <stddef.h>

#include "testutil.h"

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=\"X.Y.Z\" (CMake passes Cargo.toml's version)"
#endif

static void test_versions(void) {
    char header[64];
    snprintf(header, sizeof header, "%d.%d.%d", BNB_ADAM8BIT_VERSION_MAJOR,
             BNB_ADAM8BIT_VERSION_MINOR, BNB_ADAM8BIT_VERSION_PATCH);
    EXPECT(strcmp(bnb_adam8bit_version(), EXPECTED_VERSION) == 0); /* library == Cargo.toml */
    EXPECT(strcmp(header, EXPECTED_VERSION) == 0);                 /* header == Cargo.toml */
    EXPECT(bnb_adam8bit_abi_version() == BNB_ADAM8BIT_ABI_VERSION);
    EXPECT(strcmp(bnb_status_name(BNB_OK), "BNB_OK") == 0);
    EXPECT(strcmp(bnb_status_name(BNB_ERR_INVALID_ARGUMENT), "BNB_ERR_INVALID_ARGUMENT") == 0);
    EXPECT(strcmp(bnb_status_name(BNB_ERR_PANIC), "BNB_ERR_PANIC") == 0);
    EXPECT(strcmp(bnb_status_name(42), "BNB_ERR_UNKNOWN") == 0);
    /* The numeric codes are part of the ABI and must never move. */
    EXPECT(BNB_OK == 0 && BNB_ERR_INVALID_ARGUMENT == 1 && BNB_ERR_UNSUPPORTED == 2 &&
           BNB_ERR_OUT_OF_MEMORY == 3 && BNB_ERR_NO_DEVICE == 4 && BNB_ERR_CUDA == 5 &&
           BNB_ERR_IO == 6 && BNB_ERR_CORRUPT == 7 && BNB_ERR_MISMATCH == 8 &&
           BNB_ERR_PANIC == 9);
}

static void test_defaults(void) {
    bnb_adam8bit_config_t c;
    REQUIRE_OK(bnb_adam8bit_config_default(&c, sizeof c));
    EXPECT(c.struct_size == sizeof c);
    EXPECT(c.lr == 1e-3 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8);
    EXPECT(c.weight_decay == 0 && c.max_unorm == 0 && c.min_8bit_size == 4096);
    EXPECT(c.optim_bits == 32 && c.percentile_clipping == 100);
    EXPECT(!c.amsgrad && c.block_wise && !c.is_paged && !c.skip_zeros);
    EXPECT(!c.stochastic_rounding && c.seed == 0);

    const struct {
        bnb_preset_t p;
        double wd;
        bool paged;
    } presets[] = {{BNB_PRESET_ADAM8BIT, 0, false},
                   {BNB_PRESET_ADAMW8BIT, 0.01, false},
                   {BNB_PRESET_PAGED_ADAM8BIT, 0, true},
                   {BNB_PRESET_PAGED_ADAMW8BIT, 0.01, true}};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        bnb_adam8bit_config_t p;
        memset(&p, 0, sizeof p);
        EXPECT_OK(bnb_adam8bit_config_preset(presets[i].p, &p, sizeof p));
        EXPECT(p.struct_size == sizeof p && p.lr == 1e-3 && p.beta2 == 0.999);
        EXPECT(p.weight_decay == presets[i].wd && p.is_paged == presets[i].paged);
    }

    bnb_param_options_t o;
    REQUIRE_OK(bnb_param_options_default(&o, sizeof o));
    EXPECT(o.struct_size == sizeof o && o.flags == 0 && o.group == 0);
    EXPECT(!o.stochastic_rounding && o.seed == 0 && o.rounding_key == 0);
}

/* A program compiled against ABI 3.0's header passes the structs as they ended then (before
 * `seed`): accepted, nothing past them read or written, stochastic rounding off. */
static void test_abi_3_0_struct_sizes(void) {
    const size_t old_config = offsetof(bnb_adam8bit_config_t, seed);
    const size_t old_options = offsetof(bnb_param_options_t, seed);
    bnb_adam8bit_config_t c;
    memset(&c, 0xFF, sizeof c); /* garbage where the newer fields are */
    REQUIRE_OK(bnb_adam8bit_config_default(&c, old_config));
    EXPECT(c.struct_size == old_config && c.seed == UINT64_MAX);
    bnb_adam8bit_t *h = NULL;
    REQUIRE_OK(bnb_adam8bit_create(&c, BNB_DEVICE_CPU, 0, &h));
    bnb_param_options_t o;
    memset(&o, 0xFF, sizeof o);
    REQUIRE_OK(bnb_param_options_default(&o, old_options));
    EXPECT(o.struct_size == old_options && o.rounding_key == UINT64_MAX);
    uint32_t id = 7;
    REQUIRE_OK(bnb_adam8bit_add_param_ex(h, 5000, BNB_DTYPE_BF16, &o, &id));
    bnb_param_info_t info;
    REQUIRE_OK(bnb_adam8bit_param_info(h, id, &info, sizeof info));
    EXPECT(id == 0 && !info.stochastic_rounding && info.path == BNB_PATH_BLOCKWISE8);
    bnb_adam8bit_destroy(h);
}

/* Registration on every path, exact state sizes and param_info. */
static void test_params_and_sizes(void) {
    bnb_adam8bit_config_t cfg;
    REQUIRE_OK(bnb_adam8bit_config_default(&cfg, sizeof cfg));
    bnb_adam8bit_t *h = NULL;
    REQUIRE_OK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &h));
    bnb_device_t dev = -1;
    EXPECT_OK(bnb_adam8bit_get_device(h, &dev));
    EXPECT(dev == BNB_DEVICE_CPU);
    bnb_adam8bit_config_t back;
    EXPECT_OK(bnb_adam8bit_get_config(h, &back, sizeof back));
    EXPECT(back.lr == cfg.lr && back.beta1 == cfg.beta1 && back.min_8bit_size == 4096);

    /* numel, dtype, optim_bits override (0 = none), expected path */
    const struct {
        uint64_t numel;
        bnb_dtype_t dtype;
        int bits;
        bnb_path_t path;
    } p[] = {
        {1, BNB_DTYPE_F32, 0, BNB_PATH_FP32},          /* n = 1 */
        {4095, BNB_DTYPE_F32, 0, BNB_PATH_FP32},       /* min_8bit_size is a strict < */
        {4096, BNB_DTYPE_F32, 0, BNB_PATH_BLOCKWISE8}, /* whole blocks */
        {5000, BNB_DTYPE_F16, 0, BNB_PATH_BLOCKWISE8}, /* partial last block */
        {70000, BNB_DTYPE_BF16, 32, BNB_PATH_FP32},    /* override keeps fp32 */
    };
    const size_t np = sizeof p / sizeof p[0];
    for (uint32_t i = 0; i < np; i++) {
        bnb_param_options_t o;
        REQUIRE_OK(bnb_param_options_default(&o, sizeof o));
        if (p[i].bits) {
            o.flags = BNB_OPT_OPTIM_BITS;
            o.optim_bits = p[i].bits;
        }
        uint32_t id = 99;
        EXPECT_OK(bnb_adam8bit_add_param_ex(h, p[i].numel, p[i].dtype, &o, &id));
        EXPECT(id == i); /* ids are 0, 1, 2, ... in order */
    }
    uint32_t id = 0;
    EXPECT_OK(bnb_adam8bit_add_param(h, 256, BNB_DTYPE_F32, &id)); /* plain add_param */
    EXPECT(id == np);
    uint32_t count = 0;
    EXPECT_OK(bnb_adam8bit_num_params(h, &count));
    EXPECT(count == np + 1);

    for (uint32_t i = 0; i < np; i++) {
        const uint64_t n = p[i].numel, blocks = (n + 255) / 256;
        const int eight = p[i].path == BNB_PATH_BLOCKWISE8;
        /* expected bytes per kind; 0 = the path keeps no such array */
        const uint64_t want[10] = {eight ? n : 4 * n, eight ? n : 4 * n,
                                   eight ? 4 * blocks : 0, eight ? 4 * blocks : 0,
                                   eight ? 1024 : 0, eight ? 1024 : 0, 0, 0, 0, 0};
        uint64_t total = 0;
        for (bnb_state_kind_t k = BNB_STATE1; k <= BNB_UNORM_VEC; k++) {
            uint64_t bytes = 12345;
            if (want[k]) {
                EXPECT_OK(bnb_adam8bit_state_size(h, i, k, &bytes));
                EXPECT(bytes == want[k]);
                if (k != BNB_QMAP1 && k != BNB_QMAP2) total += want[k]; /* maps are shared */
            } else {
                EXPECT_STATUS(bnb_adam8bit_state_size(h, i, k, &bytes), BNB_ERR_INVALID_ARGUMENT);
            }
        }
        bnb_param_info_t info;
        memset(&info, 0xAB, sizeof info);
        EXPECT_OK(bnb_adam8bit_param_info(h, i, &info, sizeof info));
        EXPECT(info.struct_size == sizeof info && info.numel == n && info.dtype == p[i].dtype);
        EXPECT(info.path == p[i].path && info.step == 0 && info.nonfinite_count == 0);
        EXPECT(info.blocks == (eight ? blocks : 0) && info.state_bytes == total);
        EXPECT(info.lr == 1e-3 && info.group == 0 && !info.paged && info.gnorm_scale == 1.0f);
    }

    /* An older caller's smaller struct: the library fills only what it was given. */
    union {
        bnb_param_info_t info; /* for the alignment */
        unsigned char bytes[sizeof(bnb_param_info_t)];
    } small;
    memset(&small, 0xCD, sizeof small);
    EXPECT_OK(bnb_adam8bit_param_info(h, 0, &small.info, 16));
    uint64_t sz, numel0;
    memcpy(&sz, small.bytes, sizeof sz);
    memcpy(&numel0, small.bytes + 8, sizeof numel0);
    EXPECT(sz == 16 && numel0 == 1 && small.bytes[16] == 0xCD && small.bytes[23] == 0xCD);

    /* The maps are the library's constant tables (sorted; the signed one has 0 at code 127 and
     * ends at 1, the unsigned one runs from 0 to 1), and writing one back unchanged is
     * accepted. */
    float q1[256], q2[256];
    EXPECT_OK(bnb_adam8bit_read_state(h, 2, BNB_QMAP1, q1, sizeof q1));
    EXPECT_OK(bnb_adam8bit_read_state(h, 2, BNB_QMAP2, q2, sizeof q2));
    EXPECT(q1[0] < -0.99f && q1[127] == 0.0f && q1[255] == 1.0f && q2[0] == 0.0f &&
           q2[255] == 1.0f);
    int sorted = 1;
    for (int i = 1; i < 256; i++) sorted &= q1[i - 1] < q1[i] && q2[i - 1] < q2[i];
    EXPECT(sorted);
    EXPECT_OK(bnb_adam8bit_write_state(h, 2, BNB_QMAP1, q1, sizeof q1));
    bnb_adam8bit_destroy(h);
    bnb_adam8bit_destroy(NULL); /* a no-op by contract */
}

/* The first Adam step has a closed form: m = (1-b1) g, v = (1-b2) g^2, so the bias-corrected
 * update is -lr * g / (|g| + eps') = -lr * sign(g) up to eps. Checks the fp32 path's state and
 * the parameter, the non-finite guard, and that a blockwise step moves every element by ~lr. */
static void test_first_step(void) {
    bnb_adam8bit_config_t cfg;
    REQUIRE_OK(bnb_adam8bit_config_default(&cfg, sizeof cfg));
    bnb_adam8bit_t *h = NULL;
    REQUIRE_OK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, -1, &h));
    enum { N32 = 1000, N8 = 8192 };
    static float p32[N32], g32[N32], p8[N8], g8[N8];
    for (int i = 0; i < N32; i++) p32[i] = 1.0f, g32[i] = (i % 2 ? 0.5f : -0.25f);
    for (int i = 0; i < N8; i++) p8[i] = 0.0f, g8[i] = (float)((i * 37) % 101 - 50) / 50.0f + 0.01f;
    g32[7] = NAN;
    g32[8] = INFINITY;
    uint32_t a, b;
    REQUIRE_OK(bnb_adam8bit_add_param(h, N32, BNB_DTYPE_F32, &a));
    REQUIRE_OK(bnb_adam8bit_add_param(h, N8, BNB_DTYPE_F32, &b));
    EXPECT_OK(bnb_adam8bit_step(h, a, p32, g32, NULL));
    EXPECT_OK(bnb_adam8bit_step(h, b, p8, g8, NULL));

    static float m[N32], v[N32];
    EXPECT_OK(bnb_adam8bit_read_state(h, a, BNB_STATE1, m, sizeof m));
    EXPECT_OK(bnb_adam8bit_read_state(h, a, BNB_STATE2, v, sizeof v));
    int bad = 0;
    for (int i = 0; i < N32; i++) {
        if (i == 7 || i == 8) { /* non-finite gradient: m = v = 0, parameter untouched */
            bad += !(m[i] == 0 && v[i] == 0 && p32[i] == 1.0f);
            continue;
        }
        float g = g32[i];
        bad += fabsf(m[i] - 0.1f * g) > 1e-7f;
        bad += fabsf(v[i] - 0.001f * g * g) > 1e-9f;
        bad += fabsf(p32[i] - (1.0f - 1e-3f * (g > 0 ? 1 : -1))) > 1e-6f;
    }
    EXPECT(bad == 0);
    bnb_param_info_t info;
    EXPECT_OK(bnb_adam8bit_param_info(h, a, &info, sizeof info));
    EXPECT(info.step == 1 && info.nonfinite_count == 2);
    bad = 0;
    for (int i = 0; i < N8; i++) bad += fabsf(fabsf(p8[i]) - 1e-3f) > 2e-5f; /* 8-bit: ~1e-3 */
    EXPECT(bad == 0);
    unsigned char codes[N8];
    float absmax[N8 / 256];
    EXPECT_OK(bnb_adam8bit_read_state(h, b, BNB_STATE1, codes, sizeof codes));
    EXPECT_OK(bnb_adam8bit_read_state(h, b, BNB_ABSMAX1, absmax, sizeof absmax));
    EXPECT(absmax[0] > 0.09f && absmax[0] < 0.11f); /* max |0.1 g| in the block, g ~ 1 */

    /* set_step: the counter is what the next step's bias correction uses. */
    EXPECT_OK(bnb_adam8bit_set_step(h, a, 41));
    EXPECT_OK(bnb_adam8bit_param_info(h, a, &info, sizeof info));
    EXPECT(info.step == 41);
    /* write_state then read_state returns the same bytes. */
    for (int i = 0; i < N32; i++) m[i] = (float)i * 1e-3f;
    EXPECT_OK(bnb_adam8bit_write_state(h, a, BNB_STATE1, m, sizeof m));
    static float m2[N32];
    EXPECT_OK(bnb_adam8bit_read_state(h, a, BNB_STATE1, m2, sizeof m2));
    EXPECT(memcmp(m, m2, sizeof m) == 0);
    bnb_adam8bit_destroy(h);
}

/* A small two-group model trained for a few steps; returns the handle for inspection. */
enum { NA = 10000, NB = 3000, STEPS = 5 };
typedef struct {
    float a[NA], b[NB], ga[NA], gb[NB];
} model_t;

static void fill(model_t *mdl, int step) {
    for (int i = 0; i < NA; i++) mdl->ga[i] = sinf((float)(i + 1) * 0.37f + (float)step);
    for (int i = 0; i < NB; i++) mdl->gb[i] = cosf((float)(i + 1) * 0.11f - (float)step);
}

static bnb_adam8bit_t *train(model_t *mdl, int use_many, double lr_group1) {
    bnb_adam8bit_config_t cfg;
    REQUIRE_OK(bnb_adam8bit_config_default(&cfg, sizeof cfg));
    bnb_adam8bit_t *h = NULL;
    REQUIRE_OK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &h));
    bnb_param_options_t o;
    REQUIRE_OK(bnb_param_options_default(&o, sizeof o));
    uint32_t a, b;
    REQUIRE_OK(bnb_adam8bit_add_param_ex(h, NA, BNB_DTYPE_F32, &o, &a));
    o.group = 1;
    o.flags = BNB_OPT_LR_SCALE;
    o.lr_scale = 0.5;
    REQUIRE_OK(bnb_adam8bit_add_param_ex(h, NB, BNB_DTYPE_F32, &o, &b));
    EXPECT_OK(bnb_adam8bit_set_group_lr(h, 1, lr_group1));
    for (int i = 0; i < NA; i++) mdl->a[i] = 0.5f;
    for (int i = 0; i < NB; i++) mdl->b[i] = -0.5f;
    for (int s = 0; s < STEPS; s++) {
        fill(mdl, s);
        if (use_many) {
            bnb_step_item_t items[2] = {{b, mdl->b, mdl->gb}, {a, mdl->a, mdl->ga}};
            EXPECT_OK(bnb_adam8bit_step_many(h, items, 2, NULL));
        } else {
            EXPECT_OK(bnb_adam8bit_step(h, a, mdl->a, mdl->ga, NULL));
            EXPECT_OK(bnb_adam8bit_step(h, b, mdl->b, mdl->gb, NULL));
        }
    }
    return h;
}

static void test_many_groups_threads(void) {
    static model_t x, y;
    /* step_many (items in any order) == one step call per parameter, bit for bit. */
    bnb_adam8bit_t *h1 = train(&x, 0, 2e-3), *h2 = train(&y, 1, 2e-3);
    snapshot_t s1 = snapshot(h1), s2 = snapshot(h2);
    EXPECT(snapshot_equal(&s1, &s2));
    EXPECT(memcmp(&x, &y, sizeof x) == 0);
    bnb_param_info_t info;
    EXPECT_OK(bnb_adam8bit_param_info(h1, 1, &info, sizeof info));
    EXPECT(info.group == 1 && info.lr == 1e-3 && info.step == STEPS); /* 0.5 * 2e-3 */
    /* set_lr moves every group; lr_scale still applies. */
    EXPECT_OK(bnb_adam8bit_set_lr(h1, 4e-3));
    EXPECT_OK(bnb_adam8bit_param_info(h1, 1, &info, sizeof info));
    EXPECT(info.lr == 2e-3);
    EXPECT_OK(bnb_adam8bit_param_info(h1, 0, &info, sizeof info));
    EXPECT(info.lr == 4e-3);
    snapshot_free(&s1);
    snapshot_free(&s2);
    bnb_adam8bit_destroy(h1);
    bnb_adam8bit_destroy(h2);

    /* Group 1 at lr 0: its parameter never moves, while its step counter still advances. */
    bnb_adam8bit_t *h = train(&x, 1, 0.0);
    int moved = 0;
    for (int i = 0; i < NB; i++) moved += x.b[i] != -0.5f;
    EXPECT(moved == 0);
    for (int i = 0; i < NA; i++) moved += x.a[i] == 0.5f;
    EXPECT(moved == 0); /* group 0 moved everywhere */
    bnb_adam8bit_destroy(h);

    /* Rule 16: the thread count never changes a result. */
    EXPECT_OK(bnb_set_num_threads(1));
    EXPECT(bnb_get_num_threads() == 1);
    h1 = train(&x, 1, 2e-3);
    EXPECT_OK(bnb_set_num_threads(2));
    EXPECT(bnb_get_num_threads() == 2);
    h2 = train(&y, 1, 2e-3);
    s1 = snapshot(h1);
    s2 = snapshot(h2);
    EXPECT(snapshot_equal(&s1, &s2) && memcmp(&x, &y, sizeof x) == 0);
    EXPECT_OK(bnb_set_num_threads(0)); /* back to the default: the cores we may use */
    EXPECT(bnb_get_num_threads() >= 1);
    snapshot_free(&s1);
    snapshot_free(&s2);
    bnb_adam8bit_destroy(h1);
    bnb_adam8bit_destroy(h2);

    /* step_many with no items is a valid no-op. */
    h = train(&x, 1, 2e-3);
    s1 = snapshot(h);
    EXPECT_OK(bnb_adam8bit_step_many(h, NULL, 0, NULL));
    s2 = snapshot(h);
    EXPECT(snapshot_equal(&s1, &s2));
    snapshot_free(&s1);
    snapshot_free(&s2);
    bnb_adam8bit_destroy(h);
}

int main(void) {
    test_versions();
    test_defaults();
    test_abi_3_0_struct_sizes();
    test_params_and_sizes();
    test_first_step();
    test_many_groups_threads();
    return test_failures("abi_test");
}
