/* bad_input.c: every class of misuse of the C API returns the right status with a message, and
 * changes nothing: neither the handle (its config, every parameter's info and every state
 * array, compared before and after) nor the caller's buffers. The process keeps running
 * through all of it; a crash or an abort is a failure too. (issues 2 and 6)
 *
 * The classes: NULL handle, NULL pointers, unknown ids, wrong sizes, bad configuration values,
 * bad per-parameter overrides, unknown enum values, struct_size mismatches, streams on the CPU,
 * step_many's duplicate ids / overlapping / misaligned buffers, bad learning rates, and state
 * writes the handle cannot accept. */
#include <math.h>

#include "testutil.h"

enum { N0 = 4096, N1 = 100, N2 = 300 };

/* A handle with one parameter on each path, stepped once so that its state is not all zero. */
typedef struct {
    bnb_adam8bit_t *h;
    float p0[N0], g0[N0], p1[N1], g1[N1];
    uint16_t p2[N2], g2[N2]; /* fp16 */
} fixture_t;

static fixture_t F;

static void fixture_init(void) {
    bnb_adam8bit_config_t cfg;
    REQUIRE_OK(bnb_adam8bit_config_default(&cfg, sizeof cfg));
    REQUIRE_OK(bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &F.h));
    uint32_t id;
    REQUIRE_OK(bnb_adam8bit_add_param(F.h, N0, BNB_DTYPE_F32, &id)); /* 0: blockwise 8-bit */
    REQUIRE_OK(bnb_adam8bit_add_param(F.h, N1, BNB_DTYPE_F32, &id)); /* 1: fp32 */
    bnb_param_options_t o;
    REQUIRE_OK(bnb_param_options_default(&o, sizeof o));
    o.flags = BNB_OPT_MIN_8BIT_SIZE | BNB_OPT_OPTIM_BITS;
    o.min_8bit_size = 256;
    o.optim_bits = 8;
    REQUIRE_OK(bnb_adam8bit_add_param_ex(F.h, N2, BNB_DTYPE_F16, &o, &id)); /* 2: fp16 8-bit */
    for (int i = 0; i < N0; i++) F.p0[i] = 1, F.g0[i] = (float)(i % 13) - 6.5f;
    for (int i = 0; i < N1; i++) F.p1[i] = 1, F.g1[i] = (float)(i % 7) - 3.5f;
    for (int i = 0; i < N2; i++) F.p2[i] = 0x3C00, F.g2[i] = (i % 2) ? 0x3800 : 0xB800; /* 1, ±.5 */
    bnb_step_item_t items[3] = {{0, F.p0, F.g0}, {1, F.p1, F.g1}, {2, F.p2, F.g2}};
    REQUIRE_OK(bnb_adam8bit_step_many(F.h, items, 3, NULL));
}

/* The handle's snapshot plus the caller's parameter and gradient buffers. */
static snapshot_t snap_all(void) {
    snapshot_t s = snapshot(F.h);
    snap_put(&s, F.p0, sizeof F.p0 + sizeof F.g0 + sizeof F.p1 + sizeof F.g1 + sizeof F.p2 +
                           sizeof F.g2); /* contiguous members, no padding between them */
    return s;
}

/* The number of MISUSE cases below: asserted at the end, so that a case lost in an edit or a
 * class no longer called fails instead of shrinking the test silently. Adding a case means
 * raising it. */
enum { MISUSE_CASES = 110 };

static int class_failures_before, misuse_cases;

static void begin_class(const char *name) {
    class_failures_before = tu_failures;
    printf("%-44s", name);
    fflush(stdout);
}

static void end_class(void) { printf("%s\n", tu_failures == class_failures_before ? "ok" : "FAILED"); }

/* One misuse: the status and message are checked by tu_status, then the snapshot. */
#define MISUSE(want, call)                                                                   \
    do {                                                                                     \
        snapshot_t before_ = snap_all();                                                     \
        misuse_cases++;                                                                      \
        bnb_status_t got_ = (call);                                                          \
        tu_status(got_, (want), #call, __FILE__, __LINE__);                                  \
        snapshot_t after_ = snap_all();                                                      \
        if (!snapshot_equal(&before_, &after_))                                              \
            tu_fail(__FILE__, __LINE__, "rejected call changed the handle or buffers: " #call); \
        snapshot_free(&before_);                                                             \
        snapshot_free(&after_);                                                              \
    } while (0)

#define INVALID BNB_ERR_INVALID_ARGUMENT

/* bnb_adam8bit_create with one field changed must fail and leave *out as it was. */
static bnb_status_t create_with(bnb_adam8bit_config_t cfg, bnb_device_t dev, int32_t index) {
    bnb_adam8bit_t *sentinel = (bnb_adam8bit_t *)&F, *out = sentinel;
    bnb_status_t st = bnb_adam8bit_create(&cfg, dev, index, &out);
    if (st == BNB_OK) bnb_adam8bit_destroy(out);
    else if (out != sentinel) tu_fail(__FILE__, __LINE__, "failed create wrote *out");
    return st;
}

static void null_handle(void) {
    begin_class("NULL handle");
    bnb_adam8bit_config_t c;
    bnb_device_t d;
    uint32_t u;
    uint64_t n;
    bnb_param_info_t info;
    bnb_step_item_t it = {0, F.p0, F.g0};
    float buf[N0];
    MISUSE(INVALID, bnb_adam8bit_get_config(NULL, &c, sizeof c));
    MISUSE(INVALID, bnb_adam8bit_get_device(NULL, &d));
    MISUSE(INVALID, bnb_adam8bit_add_param(NULL, 10, BNB_DTYPE_F32, &u));
    MISUSE(INVALID, bnb_adam8bit_add_param_ex(NULL, 10, BNB_DTYPE_F32, NULL, &u));
    MISUSE(INVALID, bnb_adam8bit_num_params(NULL, &u));
    MISUSE(INVALID, bnb_adam8bit_param_info(NULL, 0, &info, sizeof info));
    MISUSE(INVALID, bnb_adam8bit_set_lr(NULL, 1e-3));
    MISUSE(INVALID, bnb_adam8bit_set_group_lr(NULL, 0, 1e-3));
    MISUSE(INVALID, bnb_adam8bit_step(NULL, 0, F.p0, F.g0, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(NULL, &it, 1, NULL));
    MISUSE(INVALID, bnb_adam8bit_state_size(NULL, 0, BNB_STATE1, &n));
    MISUSE(INVALID, bnb_adam8bit_read_state(NULL, 0, BNB_STATE1, buf, N0));
    MISUSE(INVALID, bnb_adam8bit_write_state(NULL, 0, BNB_STATE1, buf, N0));
    MISUSE(INVALID, bnb_adam8bit_set_step(NULL, 0, 3));
    end_class();
}

static void null_pointers(void) {
    begin_class("NULL pointers");
    bnb_adam8bit_config_t cfg;
    REQUIRE_OK(bnb_adam8bit_config_default(&cfg, sizeof cfg));
    bnb_step_item_t it = {0, NULL, F.g0};
    MISUSE(INVALID, bnb_adam8bit_config_default(NULL, sizeof cfg));
    MISUSE(INVALID, bnb_adam8bit_config_preset(BNB_PRESET_ADAM8BIT, NULL, sizeof cfg));
    MISUSE(INVALID, bnb_adam8bit_create(NULL, BNB_DEVICE_CPU, 0, &F.h));
    MISUSE(INVALID, bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, NULL));
    MISUSE(INVALID, bnb_adam8bit_get_config(F.h, NULL, sizeof cfg));
    MISUSE(INVALID, bnb_adam8bit_get_device(F.h, NULL));
    MISUSE(INVALID, bnb_adam8bit_add_param(F.h, 10, BNB_DTYPE_F32, NULL));
    MISUSE(INVALID, bnb_adam8bit_add_param_ex(F.h, 10, BNB_DTYPE_F32, NULL, NULL));
    MISUSE(INVALID, bnb_adam8bit_num_params(F.h, NULL));
    MISUSE(INVALID, bnb_adam8bit_param_info(F.h, 0, NULL, sizeof(bnb_param_info_t)));
    MISUSE(INVALID, bnb_adam8bit_step(F.h, 0, NULL, F.g0, NULL));
    MISUSE(INVALID, bnb_adam8bit_step(F.h, 0, F.p0, NULL, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, &it, 1, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, NULL, 2, NULL));
    MISUSE(INVALID, bnb_adam8bit_state_size(F.h, 0, BNB_STATE1, NULL));
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, BNB_STATE1, NULL, N0));
    MISUSE(INVALID, bnb_adam8bit_write_state(F.h, 0, BNB_STATE1, NULL, N0));
    end_class();
}

static void unknown_ids(void) {
    begin_class("unknown parameter id");
    uint64_t n;
    bnb_param_info_t info;
    unsigned char buf[N0];
    bnb_step_item_t it = {3, F.p0, F.g0};
    MISUSE(INVALID, bnb_adam8bit_param_info(F.h, 3, &info, sizeof info));
    MISUSE(INVALID, bnb_adam8bit_step(F.h, 3, F.p0, F.g0, NULL));
    MISUSE(INVALID, bnb_adam8bit_step(F.h, UINT32_MAX, F.p0, F.g0, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, &it, 1, NULL));
    MISUSE(INVALID, bnb_adam8bit_state_size(F.h, 3, BNB_STATE1, &n));
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 3, BNB_STATE1, buf, N0));
    MISUSE(INVALID, bnb_adam8bit_write_state(F.h, 3, BNB_STATE1, buf, N0));
    MISUSE(INVALID, bnb_adam8bit_set_step(F.h, 3, 1));
    MISUSE(INVALID, bnb_adam8bit_set_group_lr(F.h, 5, 1e-3)); /* no parameter in group 5 */
    end_class();
}

static void wrong_sizes(void) {
    begin_class("wrong sizes");
    static unsigned char buf[4 * N0 + 4];
    uint32_t u;
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, BNB_STATE1, buf, N0 - 1));
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, BNB_STATE1, buf, N0 + 1));
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, BNB_STATE1, buf, 4 * N0)); /* fp32 size */
    MISUSE(INVALID, bnb_adam8bit_write_state(F.h, 1, BNB_STATE2, buf, N1));    /* 8-bit size */
    MISUSE(INVALID, bnb_adam8bit_write_state(F.h, 0, BNB_ABSMAX1, buf, 4 * (N0 / 256) + 4));
    MISUSE(INVALID, bnb_adam8bit_add_param(F.h, 0, BNB_DTYPE_F32, &u));
    MISUSE(INVALID, bnb_adam8bit_add_param(F.h, UINT64_MAX / 2, BNB_DTYPE_F32, &u));
    MISUSE(INVALID, bnb_adam8bit_set_step(F.h, 0, UINT64_MAX));
    end_class();
}

static void bad_config(void) {
    begin_class("bad configuration values");
    bnb_adam8bit_config_t d;
    REQUIRE_OK(bnb_adam8bit_config_default(&d, sizeof d));
    bnb_adam8bit_config_t c;
#define WITH(field, value) (c = d, c.field = (value), create_with(c, BNB_DEVICE_CPU, 0))
    MISUSE(INVALID, WITH(lr, NAN));
    MISUSE(INVALID, WITH(lr, -1e-3));
    MISUSE(INVALID, WITH(lr, INFINITY));
    MISUSE(INVALID, WITH(beta1, 1.0));
    MISUSE(INVALID, WITH(beta2, 1.0));
    MISUSE(INVALID, WITH(beta1, -0.1));
    MISUSE(INVALID, WITH(beta2, NAN));
    MISUSE(INVALID, WITH(eps, -1e-8));
    MISUSE(INVALID, WITH(eps, NAN));
    MISUSE(INVALID, WITH(weight_decay, -0.01));
    MISUSE(INVALID, WITH(max_unorm, INFINITY));
    MISUSE(INVALID, WITH(optim_bits, 8)); /* exists for signature compatibility only */
    MISUSE(INVALID, WITH(percentile_clipping, 0));
    MISUSE(INVALID, WITH(percentile_clipping, 101));
    MISUSE(BNB_ERR_UNSUPPORTED, WITH(amsgrad, true));
#undef WITH
    c = d;
    MISUSE(INVALID, create_with(c, BNB_DEVICE_CPU, 3)); /* a CPU has no device 3 */
    end_class();
}

static void bad_overrides(void) {
    begin_class("bad per-parameter overrides");
    bnb_param_options_t d;
    REQUIRE_OK(bnb_param_options_default(&d, sizeof d));
    bnb_param_options_t o;
    uint32_t u;
#define ADD(flag, field, value)                                                              \
    (o = d, o.flags = (flag), o.field = (value),                                             \
     bnb_adam8bit_add_param_ex(F.h, 8192, BNB_DTYPE_F32, &o, &u))
    MISUSE(INVALID, ADD(BNB_OPT_LR_SCALE, lr_scale, NAN));
    MISUSE(INVALID, ADD(BNB_OPT_LR_SCALE, lr_scale, -1.0));
    MISUSE(INVALID, ADD(BNB_OPT_BETA1, beta1, 1.0));
    MISUSE(INVALID, ADD(BNB_OPT_BETA2, beta2, 1.5));
    MISUSE(INVALID, ADD(BNB_OPT_EPS, eps, -1.0));
    MISUSE(INVALID, ADD(BNB_OPT_WEIGHT_DECAY, weight_decay, NAN));
    MISUSE(INVALID, ADD(BNB_OPT_OPTIM_BITS, optim_bits, 16));
    MISUSE(INVALID, ADD(1u << 30, group, 0)); /* a flag this library does not know */
    /* Shards: the offset must sit on a 256-element block, the slice inside the tensor. */
    o = d;
    o.flags = BNB_OPT_SHARD;
    o.shard_full_numel = 16384;
    o.shard_offset = 100;
    MISUSE(INVALID, bnb_adam8bit_add_param_ex(F.h, 1024, BNB_DTYPE_F32, &o, &u));
    o.shard_offset = 16384 - 512;
    MISUSE(INVALID, bnb_adam8bit_add_param_ex(F.h, 1024, BNB_DTYPE_F32, &o, &u));
#undef ADD
    end_class();
}

static void unknown_enums(void) {
    begin_class("unknown enum values");
    bnb_adam8bit_config_t c, out;
    REQUIRE_OK(bnb_adam8bit_config_default(&c, sizeof c));
    uint32_t u;
    uint64_t n;
    unsigned char buf[N0];
    MISUSE(INVALID, bnb_adam8bit_config_preset(4, &out, sizeof out));
    MISUSE(INVALID, bnb_adam8bit_config_preset(-1, &out, sizeof out));
    MISUSE(INVALID, create_with(c, 7, 0)); /* no such device */
    MISUSE(INVALID, bnb_adam8bit_add_param(F.h, 10, 3, &u));
    MISUSE(INVALID, bnb_adam8bit_add_param(F.h, 10, -1, &u));
    MISUSE(INVALID, bnb_adam8bit_state_size(F.h, 0, 10, &n));
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, -1, buf, N0));
    MISUSE(INVALID, bnb_adam8bit_write_state(F.h, 0, 42, buf, N0));
    end_class();
}

static void state_kinds_not_kept(void) {
    begin_class("state arrays the path does not keep");
    static unsigned char buf[4 * N1];
    uint64_t n;
    MISUSE(INVALID, bnb_adam8bit_state_size(F.h, 1, BNB_ABSMAX1, &n)); /* fp32 path */
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 1, BNB_QMAP1, buf, 1024));
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, BNB_MAX1, buf, 4));  /* non-blockwise */
    MISUSE(INVALID, bnb_adam8bit_read_state(F.h, 0, BNB_GNORM_VEC, buf, 400)); /* no clipping */
    MISUSE(INVALID, bnb_adam8bit_write_state(F.h, 0, BNB_UNORM_VEC, buf, 4));
    /* The maps are fixed: any other table is rejected as a mismatch. */
    float q[256];
    REQUIRE_OK(bnb_adam8bit_read_state(F.h, 0, BNB_QMAP2, q, sizeof q));
    q[17] = 0.5f;
    MISUSE(BNB_ERR_MISMATCH, bnb_adam8bit_write_state(F.h, 0, BNB_QMAP2, q, sizeof q));
    end_class();
}

static void struct_sizes(void) {
    begin_class("struct_size mismatches");
    bnb_adam8bit_config_t c;
    REQUIRE_OK(bnb_adam8bit_config_default(&c, sizeof c));
    uint32_t u;
    c.struct_size = 8; /* a caller compiled against an older, smaller struct */
    MISUSE(INVALID, create_with(c, BNB_DEVICE_CPU, 0));
    c.struct_size = 0; /* never initialised */
    MISUSE(INVALID, create_with(c, BNB_DEVICE_CPU, 0));
    /* A newer caller's larger struct: the defaults zero the option this library does not
     * know and keep the caller's size, so setting that option is refused rather than
     * silently ignored. */
    struct {
        bnb_adam8bit_config_t c;
        uint64_t future_option;
    } bigger;
    memset(&bigger, 0xEE, sizeof bigger);
    REQUIRE_OK(bnb_adam8bit_config_default(&bigger.c, sizeof bigger));
    EXPECT(bigger.c.struct_size == sizeof bigger && bigger.future_option == 0);
    bigger.future_option = 1;
    bnb_adam8bit_t *sentinel = (bnb_adam8bit_t *)&F, *out = sentinel;
    MISUSE(BNB_ERR_UNSUPPORTED, bnb_adam8bit_create(&bigger.c, BNB_DEVICE_CPU, 0, &out));
    EXPECT(out == sentinel);
    /* The config's reserved tail bytes must be zero, its bools 0 or 1. */
    REQUIRE_OK(bnb_adam8bit_config_default(&c, sizeof c));
    c.reserved[0] = 1;
    MISUSE(BNB_ERR_UNSUPPORTED, create_with(c, BNB_DEVICE_CPU, 0));
    REQUIRE_OK(bnb_adam8bit_config_default(&c, sizeof c));
    memset(&c.block_wise, 2, 1);
    MISUSE(INVALID, create_with(c, BNB_DEVICE_CPU, 0));
    /* Outputs need a plausible struct size: at least the struct_size field, at most 1 MiB. */
    MISUSE(INVALID, bnb_adam8bit_get_config(F.h, &c, 0));
    MISUSE(INVALID, bnb_adam8bit_config_preset(BNB_PRESET_ADAM8BIT, &c, 7));
    MISUSE(INVALID, bnb_adam8bit_config_default(&c, ((size_t)1 << 20) + 1));
    bnb_param_options_t o;
    REQUIRE_OK(bnb_param_options_default(&o, sizeof o));
    o.struct_size = sizeof o - 8;
    MISUSE(INVALID, bnb_adam8bit_add_param_ex(F.h, 10, BNB_DTYPE_F32, &o, &u));
    bnb_param_info_t info;
    MISUSE(INVALID, bnb_adam8bit_param_info(F.h, 0, &info, 0));
    end_class();
}

static void streams_and_items(void) {
    begin_class("streams, step_many items");
    int fake_stream;
    bnb_step_item_t dup[2] = {{0, F.p0, F.g0}, {0, F.p0 + 0, F.g0}};
    bnb_step_item_t self[1] = {{1, F.p1, F.p1}};           /* grad == param */
    bnb_step_item_t cross[2] = {{0, F.p0, F.g0}, {1, F.p0 + 256, F.g1}}; /* p1 inside p0 */
    bnb_step_item_t misaligned[1] = {{0, (char *)F.p0 + 2, F.g0}};
    bnb_step_item_t ok_then_bad[2] = {{0, F.p0, F.g0}, {7, F.p1, F.g1}};
    MISUSE(INVALID, bnb_adam8bit_step(F.h, 0, F.p0, F.g0, &fake_stream));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, dup, 1, &fake_stream));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, dup, 2, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, self, 1, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, cross, 2, NULL));
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, misaligned, 1, NULL));
    /* The valid first item must not be stepped when a later one is rejected. */
    MISUSE(INVALID, bnb_adam8bit_step_many(F.h, ok_then_bad, 2, NULL));
    end_class();
}

static void learning_rates_and_threads(void) {
    begin_class("learning rates, thread counts");
    MISUSE(INVALID, bnb_adam8bit_set_lr(F.h, NAN));
    MISUSE(INVALID, bnb_adam8bit_set_lr(F.h, -1.0));
    MISUSE(INVALID, bnb_adam8bit_set_lr(F.h, INFINITY));
    MISUSE(INVALID, bnb_adam8bit_set_group_lr(F.h, 0, NAN));
    uint32_t before = bnb_get_num_threads();
    MISUSE(INVALID, bnb_set_num_threads(1u << 20));
    EXPECT(bnb_get_num_threads() == before);
    end_class();
}

int main(void) {
    fixture_init();
    null_handle();
    null_pointers();
    unknown_ids();
    wrong_sizes();
    bad_config();
    bad_overrides();
    unknown_enums();
    state_kinds_not_kept();
    struct_sizes();
    streams_and_items();
    learning_rates_and_threads();

    /* After all of that the handle still works, and no rejected add_param consumed an id. */
    uint32_t id = 0;
    EXPECT_OK(bnb_adam8bit_add_param(F.h, 10, BNB_DTYPE_F32, &id));
    EXPECT(id == 3);
    bnb_step_item_t items[2] = {{0, F.p0, F.g0}, {1, F.p1, F.g1}};
    EXPECT_OK(bnb_adam8bit_step_many(F.h, items, 2, NULL));
    bnb_param_info_t info;
    EXPECT_OK(bnb_adam8bit_param_info(F.h, 0, &info, sizeof info));
    EXPECT(info.step == 2);
    bnb_adam8bit_destroy(F.h);
    EXPECT(misuse_cases == MISUSE_CASES);
    printf("%d misuse cases rejected with their status and a message, nothing changed\n",
           misuse_cases);
    return test_failures("bad_input");
}
