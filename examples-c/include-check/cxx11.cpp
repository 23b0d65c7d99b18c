// adam8bit.h must compile on its own, first, as C++11 (-Wall -Wextra -Werror -pedantic).
#include "adam8bit.h"

int adam8bit_header_check();
int adam8bit_header_check() { return BNB_OK + static_cast<int>(sizeof(bnb_step_item_t)); }
