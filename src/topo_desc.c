#include <stddef.h>
#include <string.h>

#include "bp_config.h"
#include "error.h"
#include "topo_desc.h"

#if BP_HAVE_HWLOC
#include <hwloc.h>
#endif

void bpi_topo_flat(bpi_topo_desc *d, int n)
{
    memset(d, 0, sizeof *d);
    n = n < 1 ? 1 : n > BPI_TOPO_MAX_CORES ? BPI_TOPO_MAX_CORES : n;
    d->n_cores = n;
    for (int i = 0; i < n; i++)
        d->cores[i] = (bpi_core){0, 0, 0, i, i};
    d->n_packages = d->n_numa = d->n_l3 = 1;
    d->n_l2 = n;
}

#if BP_HAVE_HWLOC
/* Logical index of the ancestor of `obj` of `type`, or -1 if it has none. */
static int ancestor_index(hwloc_topology_t t, hwloc_obj_t obj, hwloc_obj_type_t type)
{
    hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(t, type, obj);
    return a ? (int)a->logical_index : -1;
}

/* NUMA nodes are memory children in hwloc 2: the node whose cpuset holds
 * the core's. */
static int numa_index(hwloc_topology_t t, hwloc_obj_t core)
{
    int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    for (int i = 0; i < n; i++) {
        hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i);
        if (node && hwloc_bitmap_isincluded(core->cpuset, node->cpuset))
            return i;
    }
    return 0;
}

/* Renumber ids densely (0, 1, ...) in order of first appearance, so a core
 * without an L3 (-1) gets a domain of its own. */
static int densify(bpi_topo_desc *d, size_t field)
{
    int map[BPI_TOPO_MAX_CORES + 1], next = 0;
    int seen_id[BPI_TOPO_MAX_CORES + 1];
    int n_seen = 0;
    for (int i = 0; i < d->n_cores; i++) {
        int *id = (int *)((char *)&d->cores[i] + field);
        int k = 0;
        while (k < n_seen && !(seen_id[k] == *id && *id >= 0))
            k++;
        if (k == n_seen) {
            seen_id[n_seen] = *id;
            map[n_seen++] = next++;
        }
        *id = map[k];
    }
    return next;
}

static bp_status describe_hwloc(bpi_topo_desc *d, hwloc_topology_t t)
{
    int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    hwloc_obj_type_t unit = HWLOC_OBJ_CORE;
    if (n <= 0) {
        unit = HWLOC_OBJ_PU; /* some VMs and emulators report PUs only */
        n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    }
    if (n <= 0 || n > BPI_TOPO_MAX_CORES)
        return bpi_fail(BP_EUNSUPPORTED, "topology: %d cores (expected 1..%d)", n,
                        BPI_TOPO_MAX_CORES);
    memset(d, 0, sizeof *d);
    d->n_cores = n;
    d->from_hwloc = 1;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t core = hwloc_get_obj_by_type(t, unit, (unsigned)i);
        hwloc_obj_t pu = hwloc_get_obj_inside_cpuset_by_type(t, core->cpuset, HWLOC_OBJ_PU, 0);
        d->cores[i].package = ancestor_index(t, core, HWLOC_OBJ_PACKAGE);
        d->cores[i].numa = numa_index(t, core);
        d->cores[i].l3 = ancestor_index(t, core, HWLOC_OBJ_L3CACHE);
        d->cores[i].l2 = ancestor_index(t, core, HWLOC_OBJ_L2CACHE);
        d->cores[i].pu_os_index = pu ? (int)pu->os_index : i;
    }
    d->n_packages = densify(d, offsetof(bpi_core, package));
    d->n_numa = densify(d, offsetof(bpi_core, numa));
    d->n_l3 = densify(d, offsetof(bpi_core, l3));
    d->n_l2 = densify(d, offsetof(bpi_core, l2));
    return BP_OK;
}
#endif

bp_status bpi_topo_describe_loaded(bpi_topo_desc *d, void *hwloc)
{
#if BP_HAVE_HWLOC
    return describe_hwloc(d, (hwloc_topology_t)hwloc);
#else
    (void)d, (void)hwloc;
    return bpi_fail(BP_EUNSUPPORTED, "topology: this build has no hwloc");
#endif
}

bp_status bpi_topo_describe(bpi_topo_desc *d, const char *synthetic, const char *xml_path,
                            int n_fallback)
{
#if BP_HAVE_HWLOC
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0)
        return bpi_fail(BP_ENOMEM, "topology: hwloc_topology_init failed");
    int bad = 0;
    if (synthetic)
        bad = hwloc_topology_set_synthetic(t, synthetic) != 0;
    else if (xml_path)
        bad = hwloc_topology_set_xml(t, xml_path) != 0;
    if (bad || hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return bpi_fail(synthetic || xml_path ? BP_EINVAL : BP_EUNSUPPORTED,
                        "topology: hwloc cannot load %s%s", synthetic ? "synthetic " : "",
                        synthetic ? synthetic : xml_path ? xml_path : "this machine");
    }
    bp_status s = describe_hwloc(d, t);
    hwloc_topology_destroy(t);
    (void)n_fallback;
    return s;
#else
    if (synthetic || xml_path)
        return bpi_fail(BP_EUNSUPPORTED, "topology: this build has no hwloc");
    bpi_topo_flat(d, n_fallback);
    return BP_OK;
#endif
}
