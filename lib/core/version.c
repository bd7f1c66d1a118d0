#include "dsr1.h"

#define DSRI_STR2(x) #x
#define DSRI_STR(x) DSRI_STR2(x)

const char *dsr1_version(void)
{
    return DSRI_STR(DSR1_VERSION_MAJOR) "." DSRI_STR(DSR1_VERSION_MINOR) "." DSRI_STR(DSR1_VERSION_PATCH);
}

int dsr1_abi_version(void)
{
    return DSR1_ABI_VERSION;
}
