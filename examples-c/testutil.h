/* testutil.h: the few helpers abi_test.c and bad_input.c share (header-only, C99).
 *
 * EXPECT_STATUS records a failure and carries on, so one run reports every broken case rather
 * than the first; main() returns test_failures() != 0. A rejected call must also leave a
 * non-empty message, and a successful one an empty message. */
#ifndef ADAM8BIT_TESTUTIL_H
#define ADAM8BIT_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adam8bit.h"

static int tu_failures = 0, tu_checks = 0;

static void tu_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "%s:%d: FAIL: %s\n", file, line, what);
    tu_failures++;
}

static int tu_status(bnb_status_t got, bnb_status_t want, const char *expr, const char *file,
                     int line) {
    const char *msg = bnb_last_error_message();
    char buf[1024];
    tu_checks++;
    if (got != want) {
        snprintf(buf, sizeof buf, "%s returned %s, expected %s (message: \"%s\")", expr,
                 bnb_status_name(got), bnb_status_name(want), msg ? msg : "(NULL)");
        tu_fail(file, line, buf);
        return 0;
    }
    if (!msg || (want != BNB_OK && msg[0] == '\0') || (want == BNB_OK && msg[0] != '\0')) {
        snprintf(buf, sizeof buf, "%s: message \"%s\" after %s", expr, msg ? msg : "(NULL)",
                 bnb_status_name(got));
        tu_fail(file, line, buf);
        return 0;
    }
    return 1;
}

#define EXPECT_STATUS(call, want) tu_status((call), (want), #call, __FILE__, __LINE__)
#define EXPECT_OK(call) EXPECT_STATUS(call, BNB_OK)
#define EXPECT(cond)                                                                         \
    do {                                                                                     \
        tu_checks++;                                                                         \
        if (!(cond)) tu_fail(__FILE__, __LINE__, #cond);                                     \
    } while (0)

/* Setup that must work, or nothing after it means anything. */
#define REQUIRE_OK(call)                                                                     \
    do {                                                                                     \
        if (!EXPECT_OK(call)) exit(1);                                                       \
    } while (0)

static int test_failures(const char *name) {
    if (tu_failures)
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
    else
        printf("%s: all %d checks passed\n", name, tu_checks);
    return tu_failures != 0;
}

/* Everything observable about a handle, serialised into one buffer: configuration, then per
 * parameter its info fields and every state array it keeps. Two equal snapshots mean a call
 * changed nothing. Fields are copied one by one so that struct padding never takes part. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
} snapshot_t;

static void snap_put(snapshot_t *s, const void *p, size_t n) {
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->data = realloc(s->data, s->cap);
        if (!s->data) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

static snapshot_t snapshot(const bnb_adam8bit_t *h) {
    snapshot_t s = {NULL, 0, 0};
    bnb_adam8bit_config_t c;
    uint32_t n = 0;
    REQUIRE_OK(bnb_adam8bit_get_config(h, &c, sizeof c));
    snap_put(&s, &c.lr, sizeof c.lr);
    snap_put(&s, &c.beta1, sizeof c.beta1);
    snap_put(&s, &c.beta2, sizeof c.beta2);
    snap_put(&s, &c.eps, sizeof c.eps);
    snap_put(&s, &c.weight_decay, sizeof c.weight_decay);
    REQUIRE_OK(bnb_adam8bit_num_params(h, &n));
    snap_put(&s, &n, sizeof n);
    for (uint32_t id = 0; id < n; id++) {
        bnb_param_info_t i;
        memset(&i, 0, sizeof i);
        REQUIRE_OK(bnb_adam8bit_param_info(h, id, &i, sizeof i));
        snap_put(&s, &i.numel, sizeof i.numel);
        snap_put(&s, &i.dtype, sizeof i.dtype);
        snap_put(&s, &i.path, sizeof i.path);
        snap_put(&s, &i.step, sizeof i.step);
        snap_put(&s, &i.state_bytes, sizeof i.state_bytes);
        snap_put(&s, &i.nonfinite_count, sizeof i.nonfinite_count);
        snap_put(&s, &i.lr, sizeof i.lr);
        snap_put(&s, &i.group, sizeof i.group);
        for (bnb_state_kind_t k = BNB_STATE1; k <= BNB_UNORM_VEC; k++) {
            uint64_t bytes = 0;
            if (bnb_adam8bit_state_size(h, id, k, &bytes) != BNB_OK) continue; /* not kept */
            void *buf = malloc(bytes ? bytes : 1);
            REQUIRE_OK(bnb_adam8bit_read_state(h, id, k, buf, bytes));
            snap_put(&s, buf, bytes);
            free(buf);
        }
    }
    return s;
}

static int snapshot_equal(const snapshot_t *a, const snapshot_t *b) {
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static void snapshot_free(snapshot_t *s) {
    free(s->data);
    s->data = NULL;
    s->len = s->cap = 0;
}

#endif
