/* bp_backward_plan_text: a plan, as a per-group timeline people can read. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "sched_plan.h"

/* Appends to a caller's buffer, counting what did not fit. */
typedef struct text {
    char *buf;
    size_t size, len;
} text;

static void put(text *t, const char *fmt, ...) BPI_PRINTF(2, 3);
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->len < t->size ? t->size - t->len : 0;
    int n = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

static const char *kind_name(bpi_task_kind k)
{
    static const char *names[] = {"ACT    dZ = dA * act'(Z)", "DX     dX = dZ W",
                                  "DW     dW = dZ^T X, db", "NORM", "UPDATE"};
    return names[k];
}

static void describe(text *t, const bpi_plan_input *in, const bpi_plan *p)
{
    put(t, "backward plan: %zu layers (%zu", in->n_layers, in->n_in[0]);
    for (size_t i = 0; i < in->n_layers; i++)
        put(t, "-%zu", in->n_out[i]);
    put(t, "), batch %zu, %d threads on %d cores (%d packages, %d NUMA nodes, %d L3)\n",
        in->batch, in->n_threads, in->topo->n_cores, in->topo->n_packages, in->topo->n_numa,
        in->topo->n_l3);
    put(t, "predicted: %.1f us scheduled, %.1f us sequential (%.2fx)%s\n", p->makespan * 1e6,
        p->sequential * 1e6, p->sequential / p->makespan,
        p->n_groups == 1 ? ": the sequential backward is kept" : "");
    for (int g = 0; g <= p->n_groups; g++) {
        const bpi_group *G = &p->groups[g];
        if (g == p->n_groups && !bpi_plan_has_joint(p))
            break;
        if (g == p->n_groups)
            put(t, "joint: all threads (%d), when every group is done\n", G->n_threads);
        else
            put(t, "group %d: threads %d-%d (%d), NUMA node %d, %d L3 domain%s%s\n", g,
                G->first_thread, G->first_thread + G->n_threads - 1, G->n_threads, G->numa,
                G->n_l3, G->n_l3 == 1 ? "" : "s", g == 0 ? ", critical path" : "");
        for (int k = p->start[g]; k < p->start[g + 1]; k++) {
            const bpi_task *x = &p->tasks[p->order[k]];
            put(t, "  %9.1f - %9.1f us  %-26s", x->start * 1e6, x->end * 1e6, kind_name(x->kind));
            if (x->layer >= 0)
                put(t, " layer %d", x->layer);
            put(t, "\n");
        }
    }
    put(t, "memory (parameters, gradients, optimizer state) on NUMA node:");
    for (int i = 0; i < p->n_layers; i++)
        put(t, " layer %d -> %d%s", i, p->layer_numa[i], i + 1 < p->n_layers ? "," : "\n");
}

bp_status bp_backward_plan_text(const size_t *widths, size_t n_widths, size_t batch,
                                int n_threads, const char *synthetic, const char *xml_path,
                                char *buf, size_t size, size_t *needed)
{
    const char *fn = "bp_backward_plan_text";
    if (!widths || !buf || size == 0)
        return bpi_fail(BP_EINVAL, "%s: %s", fn, !widths ? "widths is NULL" : "no buffer");
    if (n_widths < 2 || n_widths > 4097 || batch == 0 || n_threads < 0)
        return bpi_fail(BP_EINVAL, "%s: %zu widths, batch %zu, %d threads", fn, n_widths, batch,
                        n_threads);
    if (synthetic && xml_path)
        return bpi_fail(BP_EINVAL, "%s: give a synthetic topology or an XML file, not both", fn);
    for (size_t i = 0; i < n_widths; i++)
        if (widths[i] == 0)
            return bpi_fail(BP_EINVAL, "%s: widths[%zu] is 0", fn, i);
    bpi_topo_desc *topo = bpi_alloc(sizeof *topo);
    if (!topo)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the topology", fn);
    bp_status s = bpi_topo_describe(topo, synthetic, xml_path, n_threads ? n_threads : 1);
    if (s == BP_OK) {
        bpi_plan_input in = {topo, n_threads ? n_threads : topo->n_cores, n_widths - 1, widths,
                             widths + 1, batch, 0, 0, 1};
        bpi_plan plan;
        s = bpi_plan_build(&in, &plan);
        if (s == BP_OK) {
            text t = {buf, size, 0};
            describe(&t, &in, &plan);
            if (needed)
                *needed = t.len + 1;
            bpi_plan_free(&plan);
        }
    }
    bpi_free(topo);
    return s;
}
