/* A user's program built outside this repository against an installed libadam8bit (through
 * the CMake package or pkg-config): one Adam step must move every element by lr. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <adam8bit.h>

int main(void) {
    enum { N = 8192 };
    static float p[N], g[N];
    for (int i = 0; i < N; i++) p[i] = 0.0f, g[i] = (i % 2) ? 0.5f : -1.0f;
    bnb_adam8bit_config_t cfg;
    bnb_adam8bit_t *h = NULL;
    uint32_t id;
    if (bnb_adam8bit_config_default(&cfg, sizeof cfg) != BNB_OK ||
        bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &h) != BNB_OK ||
        bnb_adam8bit_add_param(h, N, BNB_DTYPE_F32, &id) != BNB_OK ||
        bnb_adam8bit_step(h, id, p, g, NULL) != BNB_OK) {
        fprintf(stderr, "consumer: %s\n", bnb_last_error_message());
        return 1;
    }
    bnb_param_info_t info;
    memset(&info, 0, sizeof info);
    bnb_adam8bit_param_info(h, id, &info, sizeof info);
    bnb_adam8bit_destroy(h);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += fabsf(fabsf(p[i]) - 1e-3f) > 2e-5f;
    if (bad || info.path != BNB_PATH_BLOCKWISE8 || strcmp(bnb_adam8bit_version(), CONSUMER_EXPECT_VERSION)) {
        fprintf(stderr, "consumer: FAIL (%d elements off, path %d, version %s)\n", bad,
                (int)info.path, bnb_adam8bit_version());
        return 1;
    }
    printf("consumer (C): libadam8bit %s OK\n", bnb_adam8bit_version());
    return 0;
}
