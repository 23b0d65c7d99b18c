/* adam8bit.h must compile on its own, first, in strict C99 (-Wall -Wextra -Werror -pedantic). */
#include "adam8bit.h"

int adam8bit_header_check(void);
int adam8bit_header_check(void) { return BNB_OK + (int)sizeof(bnb_adam8bit_config_t); }
