#include "backprop.h"
#include "bp_config.h"

#define BPI_STR2(x) #x
#define BPI_STR(x) BPI_STR2(x)

unsigned bp_version(void)
{
    return BP_VERSION;
}

const char *bp_version_string(void)
{
    return BPI_STR(BP_VERSION_MAJOR) "." BPI_STR(BP_VERSION_MINOR) "." BPI_STR(BP_VERSION_PATCH);
}

unsigned bp_build_features(void)
{
    return (BP_HAVE_OPENMP ? BP_FEATURE_OPENMP : 0u) | (BP_HAVE_HWLOC ? BP_FEATURE_HWLOC : 0u);
}
