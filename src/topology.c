/* What the machine looks like, from hwloc when available.
 *
 * VMs and emulators report nonsense (a 508 MB L3 per core on the EPYC VMs we
 * run on; no caches at all under valgrind and qemu), so every cache size is
 * checked against a plausible range: a size in range is kept, a missing or
 * absurd one is replaced by a fallback typical of current x86 and Arm server
 * cores. The GEMM blocking is derived from these numbers. */
#include <string.h>
#include <unistd.h>

#include "bp_config.h"
#include "ctx.h"

#if BP_HAVE_HWLOC
#include <hwloc.h>
#endif

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

typedef struct cache_range {
    size_t lo, hi, fallback;
} cache_range;

static const cache_range l1d_range = {8 * KIB, 256 * KIB, 32 * KIB};
static const cache_range l2_range = {128 * KIB, 16 * MIB, 1 * MIB};
static const cache_range l3_range = {1 * MIB, 256 * MIB, 32 * MIB};

static size_t sane_cache(size_t bytes, const cache_range *r)
{
    if (bytes < r->lo || bytes > r->hi)
        return r->fallback;
    return bytes;
}

static int processors_online(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 && n <= 1 << 20 ? (int)n : 1;
}

#if BP_HAVE_HWLOC
static int count_type(hwloc_topology_t t, hwloc_obj_type_t type)
{
    int n = hwloc_get_nbobjs_by_type(t, type);
    return n > 0 ? n : 0;
}

/* Size of the first data or unified cache of `type`, and how many there are. */
static size_t cache_size(hwloc_topology_t t, hwloc_obj_type_t type, int *count)
{
    *count = count_type(t, type);
    hwloc_obj_t obj = hwloc_get_obj_by_type(t, type, 0);
    if (!obj || !obj->attr)
        return 0;
    if (obj->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION)
        return 0;
    return (size_t)obj->attr->cache.size;
}

static int detect_hwloc(bp_topology_info *topo, hwloc_topology_t t)
{
    topo->n_packages = count_type(t, HWLOC_OBJ_PACKAGE);
    topo->n_numa_nodes = count_type(t, HWLOC_OBJ_NUMANODE);
    topo->n_cores = count_type(t, HWLOC_OBJ_CORE);
    topo->n_pus = count_type(t, HWLOC_OBJ_PU);
    int n_l1, n_l2, n_l3;
    topo->l1d_bytes = cache_size(t, HWLOC_OBJ_L1CACHE, &n_l1);
    topo->l2_bytes = cache_size(t, HWLOC_OBJ_L2CACHE, &n_l2);
    topo->l3_bytes = cache_size(t, HWLOC_OBJ_L3CACHE, &n_l3);
    if (topo->n_cores == 0)
        topo->n_cores = topo->n_pus;
    topo->cores_per_l2 = n_l2 > 0 ? (topo->n_cores + n_l2 - 1) / n_l2 : 1;
    topo->cores_per_l3 = n_l3 > 0 ? (topo->n_cores + n_l3 - 1) / n_l3 : topo->n_cores;
    return topo->n_pus > 0;
}
#endif

void *bpi_hwloc_load(void)
{
#if BP_HAVE_HWLOC
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0)
        return NULL;
    if (hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return NULL;
    }
    return t;
#else
    return NULL;
#endif
}

void bpi_hwloc_unload(void *hwloc)
{
#if BP_HAVE_HWLOC
    if (hwloc)
        hwloc_topology_destroy((hwloc_topology_t)hwloc);
#else
    (void)hwloc;
#endif
}

void bpi_topology_detect(bp_topology_info *topo, void *hwloc)
{
    memset(topo, 0, sizeof *topo);
#if BP_HAVE_HWLOC
    topo->hwloc_used = hwloc && detect_hwloc(topo, (hwloc_topology_t)hwloc);
#else
    (void)hwloc;
#endif
    if (!topo->hwloc_used) {
        memset(topo, 0, sizeof *topo);
        topo->n_pus = topo->n_cores = processors_online();
        topo->cores_per_l2 = 1;
        topo->cores_per_l3 = topo->n_cores;
    }
    if (topo->n_packages < 1)
        topo->n_packages = 1;
    if (topo->n_numa_nodes < 1)
        topo->n_numa_nodes = 1;
    if (topo->cores_per_l2 < 1)
        topo->cores_per_l2 = 1;
    if (topo->cores_per_l3 < 1)
        topo->cores_per_l3 = 1;
    topo->l1d_bytes = sane_cache(topo->l1d_bytes, &l1d_range);
    topo->l2_bytes = sane_cache(topo->l2_bytes, &l2_range);
    topo->l3_bytes = sane_cache(topo->l3_bytes, &l3_range);
}
