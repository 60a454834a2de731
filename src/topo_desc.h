/* The machine as the backward planner sees it: a flat list of cores, each
 * with the ids of the package, NUMA node, L3 and L2 domains it belongs to.
 * Built from hwloc (the real machine, a synthetic description or an XML
 * file) or, without hwloc, as n cores sharing everything but their L2. */
#ifndef BP_TOPO_DESC_H
#define BP_TOPO_DESC_H

#include "backprop.h"

/* Cores the planner can describe; far above any current server. */
#define BPI_TOPO_MAX_CORES 1024

typedef struct bpi_core {
    int package, numa, l3, l2;   /* dense ids, 0-based, in hwloc's logical order */
    int pu_os_index;             /* first PU of the core, for binding */
} bpi_core;

typedef struct bpi_topo_desc {
    int n_cores;
    bpi_core cores[BPI_TOPO_MAX_CORES];
    int n_packages, n_numa, n_l3, n_l2;
    int from_hwloc;              /* 0: the fallback description */
} bpi_topo_desc;

/* Describe the real machine (hwloc honours HWLOC_SYNTHETIC / HWLOC_XMLFILE),
 * or the topology in `synthetic` (an hwloc synthetic string) or `xml_path`
 * when one is given. Falls back to n_fallback flat cores without hwloc. */
bp_status bpi_topo_describe(bpi_topo_desc *d, const char *synthetic, const char *xml_path,
                            int n_fallback);

/* Describe the machine of a loaded hwloc topology (bpi_hwloc_load; not
 * NULL). */
bp_status bpi_topo_describe_loaded(bpi_topo_desc *d, void *hwloc);

/* n flat cores: one package, one NUMA node, one L3, private L2s. */
void bpi_topo_flat(bpi_topo_desc *d, int n);

#endif
