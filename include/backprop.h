/*
 * backprop: training multilayer perceptrons on CPUs with backpropagation.
 *
 * Conventions used by every function below.
 *  - Layout is row-major and batch-major. A batch X is (B, n_in); layer i has
 *    W_i (n_out, n_in) (nn.Linear's layout) and b_i (n_out); its forward pass
 *    is A_i = act_i(A_{i-1} W_i^T + b_i).
 *  - Every function returns a bp_status. On failure the caller's data is left
 *    untouched and bp_last_error() gives a message naming what was wrong.
 *  - The library never prints, exits or aborts, and changes no process-wide
 *    state (in particular no omp_set_num_threads()).
 *  - Threads. Objects are not internally locked. A context and everything
 *    built on it (its nets, their optimizers: they share the context's GEMM
 *    workspace) are used by one thread at a time; objects built on distinct
 *    contexts are fully independent and may be used from different threads
 *    at the same time, with the same results bit for bit as one after the
 *    other (no hidden shared state: tests/test_concurrency.c). A dataset is
 *    used by one training epoch at a time (bp_train_epoch writes its shuffle
 *    order); functions taking a const dataset only read it and may share
 *    it. bp_last_error() and bp_debug_fail_alloc() are per thread. Several
 *    caller threads may each run the library's OpenMP regions at once.
 *  - Floating point. Inside its kernels and parallel regions the library
 *    runs with flush-to-zero and denormals-are-zero (MXCSR.FTZ|DAZ on
 *    x86-64, FPCR.FZ on aarch64), on every thread that runs them, so that
 *    values drifting into the denormal range cannot slow training down a
 *    hundredfold: a denormal input or intermediate counts as 0 there. Each
 *    thread's previous mode is restored when the region ends (exception
 *    flags raised meanwhile are kept): neither the caller's thread nor
 *    OpenMP's pooled threads are left changed. Results stay bitwise
 *    identical across thread counts.
 */
#ifndef BACKPROP_H
#define BACKPROP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BP_BUILDING_LIBRARY) && defined(__GNUC__)
#define BP_API __attribute__((visibility("default")))
#else
#define BP_API
#endif

#define BP_VERSION_MAJOR 0
#define BP_VERSION_MINOR 1
#define BP_VERSION_PATCH 0
/* Encoded as major * 10000 + minor * 100 + patch. */
#define BP_VERSION (BP_VERSION_MAJOR * 10000 + BP_VERSION_MINOR * 100 + BP_VERSION_PATCH)

/* Runtime version of the linked library, encoded like BP_VERSION. */
BP_API unsigned bp_version(void);
/* Runtime version as a string, "major.minor.patch". */
BP_API const char *bp_version_string(void);

/* What this build of the library was compiled with (bits of bp_feature). */
enum bp_feature { BP_FEATURE_OPENMP = 1u << 0, BP_FEATURE_HWLOC = 1u << 1 };
BP_API unsigned bp_build_features(void);

/* ------------------------------------------------------------------ errors */

typedef enum bp_status {
    BP_OK = 0,
    BP_EINVAL,       /* invalid argument: NULL, zero or overflowing size, shape mismatch */
    BP_ENOMEM,       /* an allocation failed */
    BP_EIO,          /* an operating-system I/O call failed */
    BP_EFORMAT,      /* a file or stream is malformed */
    BP_ENUMERIC,     /* a NaN or infinity appeared; the step was not applied */
    BP_EUNSUPPORTED, /* a feature this build or CPU does not have */
    BP_ESTATE        /* call out of order (e.g. backward before forward) */
} bp_status;

/* Short fixed description of a status ("invalid argument", ...). */
BP_API const char *bp_status_str(bp_status status);
/* Message of the last failure in the calling thread, naming the function and
 * what was wrong (argument, shape, layer). Empty string if none. The pointer
 * stays valid until the next failing call in this thread. */
BP_API const char *bp_last_error(void);

/* Test hook: allocation-failure injection. Every buffer the library
 * allocates (objects, tensors, file buffers, zlib's state, CSV lines) comes
 * from one allocator; after bp_debug_fail_alloc(n) with n >= 1, the n-th
 * allocation made from now on by the calling thread fails, once, and the
 * call making it returns BP_ENOMEM (having freed what it took and left the
 * caller's objects as they were). n <= 0 disarms it. The setting is
 * per thread, so it never affects other threads. Not covered: memory the C
 * library, hwloc or OpenMP allocate for themselves (stdio buffers, thread
 * pools); their failures surface as BP_EIO or are handled by them. */
BP_API void bp_debug_fail_alloc(long n);
/* Allocations still to go before the armed failure in the calling thread;
 * 0 once it has happened (or when none is armed). */
BP_API long bp_debug_fail_alloc_pending(void);

/* ----------------------------------------------------------------- context */

typedef struct bp_ctx bp_ctx;

/* What the context knows of the machine (from hwloc when built with it).
 * Cache sizes are the ones the library uses, after clamping to sane ranges. */
typedef struct bp_topology_info {
    int hwloc_used;      /* 1 if hwloc described the machine, 0 if fallbacks */
    int n_packages;
    int n_numa_nodes;
    int n_cores;
    int n_pus;
    size_t l1d_bytes;    /* per core */
    size_t l2_bytes;     /* per core (or per the group sharing it) */
    size_t l3_bytes;     /* per L3 domain */
    int cores_per_l2;
    int cores_per_l3;
} bp_topology_info;

/* Create a context. n_threads = 0 uses one thread per core (as hwloc counts
 * them, or omp_get_num_procs() without hwloc); without OpenMP it is 1. */
BP_API bp_status bp_ctx_create(bp_ctx **ctx, int n_threads);
/* Destroy every net made on a context before the context. */
BP_API void bp_ctx_destroy(bp_ctx *ctx);
/* Threads this context runs its parallel regions with. */
BP_API int bp_ctx_threads(const bp_ctx *ctx);
/* Change the thread count (>= 1) for later calls. */
BP_API bp_status bp_ctx_set_threads(bp_ctx *ctx, int n_threads);
/* Copy the topology summary into *info. */
BP_API bp_status bp_ctx_topology(const bp_ctx *ctx, bp_topology_info *info);
/* The instruction set of the GEMM micro-kernel this context runs: "avx512",
 * "avx2", "neon" or "scalar". bp_ctx_create picks the best one the CPU (and
 * the build: meson option simd) supports; the environment variable
 * BP_ISA=scalar|avx2|avx512|neon, read at bp_ctx_create, forces one, and
 * bp_ctx_create fails with BP_EUNSUPPORTED if it is unknown or not
 * available. Empty string for a NULL ctx. */
BP_API const char *bp_ctx_isa(const bp_ctx *ctx);

/* How backward passes run. SCHEDULED (the default) plans, when a net is
 * created, where each layer's gradient work goes: the input-gradient chain
 * on one group of cores, the weight and bias gradients on others sharing
 * caches (groups cut along hwloc's cache domains), when the cost model
 * predicts a gain over SEQUENTIAL, which runs each GEMM on all threads in
 * graph order. Results are bitwise identical either way. The environment
 * variable BP_SCHED=sequential|auto, read at bp_ctx_create, overrides the
 * default (anything else: BP_EINVAL). A net keeps the plan it was created
 * with; it runs it only while the context still has the same thread count
 * and mode (else the sequential backward). */
typedef enum bp_backward_mode {
    BP_BACKWARD_SEQUENTIAL = 0,
    BP_BACKWARD_SCHEDULED = 1
} bp_backward_mode;
BP_API bp_status bp_ctx_set_backward(bp_ctx *ctx, bp_backward_mode mode);
BP_API bp_backward_mode bp_ctx_backward(const bp_ctx *ctx);

/* The backward plan for an MLP of widths[0] inputs and layers of widths[1..
 * n_widths) at `batch`, on n_threads threads (0: one per core) of this
 * machine, or of the topology given as an hwloc synthetic string or an
 * hwloc XML file (at most one non-NULL; hwloc also honours HWLOC_SYNTHETIC
 * and HWLOC_XMLFILE), as text: the groups of cores, each group's tasks as a
 * timeline with predicted times, where each layer's memory goes, and the
 * predicted time against the sequential backward. Written into buf
 * (truncated to size, always NUL-terminated); *needed (may be NULL) gets
 * the full length + 1. */
BP_API bp_status bp_backward_plan_text(const size_t *widths, size_t n_widths, size_t batch,
                                       int n_threads, const char *synthetic,
                                       const char *xml_path, char *buf, size_t size,
                                       size_t *needed);

/* ------------------------------------------------------------------ network */

typedef enum bp_activation {
    BP_ACT_IDENTITY = 0, /* f(z) = z */
    BP_ACT_RELU,         /* f(z) = max(0, z) */
    BP_ACT_LEAKY_RELU,   /* f(z) = z > 0 ? z : alpha z */
    BP_ACT_SIGMOID,      /* f(z) = 1 / (1 + e^-z) */
    BP_ACT_TANH,         /* f(z) = tanh z */
    BP_ACT_GELU          /* f(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) */
} bp_activation;

/* The loss head applied to the last layer's output Y (B, n_out). The loss is
 * always a mean over the batch (and, for MSE and BCE, over the outputs, as
 * PyTorch's reduction='mean'). */
typedef enum bp_head {
    BP_HEAD_SOFTMAX_CE = 0, /* L = mean_b -log softmax(Y_b)[label_b]; int labels */
    BP_HEAD_MSE,            /* L = mean_{b,j} (Y_bj - T_bj)^2; float targets */
    BP_HEAD_SIGMOID_BCE     /* L = mean_{b,j} -(T log s(Y) + (1-T) log(1-s(Y))); T in [0,1] */
} bp_head;

typedef struct bp_layer_spec {
    size_t n_out;             /* width of this layer's output */
    bp_activation activation;
    float alpha;              /* negative slope for BP_ACT_LEAKY_RELU, else ignored */
} bp_layer_spec;

typedef enum bp_init {
    BP_INIT_XAVIER_UNIFORM = 0, /* U(-a, a), a = sqrt(6 / (n_in + n_out)) */
    BP_INIT_XAVIER_NORMAL,      /* N(0, 2 / (n_in + n_out)) */
    BP_INIT_HE_UNIFORM,         /* U(-a, a), a = sqrt(6 / n_in) */
    BP_INIT_HE_NORMAL           /* N(0, 2 / n_in) */
} bp_init;

/* Which tensor of a layer. */
typedef enum bp_tensor {
    BP_WEIGHT = 0, /* W (n_out, n_in) */
    BP_BIAS        /* b (n_out) */
} bp_tensor;

typedef struct bp_net bp_net;

/* Create a net of n_layers dense layers on n_in inputs, with the given head,
 * able to run batches of up to max_batch rows. All buffers (parameters,
 * gradients, activations, workspace) are allocated here, 64-byte aligned;
 * nothing is allocated later by forward, backward or training. Parameters
 * start at zero: call bp_net_init(). The net keeps a pointer to ctx, which
 * must outlive it. */
BP_API bp_status bp_net_create(bp_net **net, bp_ctx *ctx, size_t n_in,
                               size_t n_layers, const bp_layer_spec *layers,
                               bp_head head, size_t max_batch);
BP_API void bp_net_destroy(bp_net *net);

BP_API size_t bp_net_n_layers(const bp_net *net);
BP_API size_t bp_net_n_in(const bp_net *net);
BP_API size_t bp_net_n_out(const bp_net *net);  /* width of the last layer */
BP_API size_t bp_net_max_batch(const bp_net *net);
BP_API bp_head bp_net_head(const bp_net *net);
/* Copy layer `layer`'s spec into *spec. */
BP_API bp_status bp_net_layer(const bp_net *net, size_t layer, bp_layer_spec *spec);
/* Total number of parameters (weights and biases). */
BP_API size_t bp_net_n_params(const bp_net *net);

/* Initialise every weight with `init` from the library's RNG seeded with
 * `seed` (xoshiro256** seeded by splitmix64; normals by the Marsaglia polar
 * method with a correctly-rounded-arithmetic logarithm), so a seed gives the
 * same weights on every platform. Biases are set to zero. */
BP_API bp_status bp_net_init(bp_net *net, bp_init init, uint64_t seed);

/* Inference: Y (B, n_out) = head output of the net on X (B, n_in):
 * probabilities for softmax-CE, sigmoid(logits) for BCE, raw outputs for MSE.
 * Overwrites the net's activations. 1 <= B <= max_batch. */
BP_API bp_status bp_net_predict(bp_net *net, const float *X, size_t B, float *Y);

/* Training forward on X (B, n_in): keeps what backward needs. */
BP_API bp_status bp_net_forward(bp_net *net, const float *X, size_t B);

/* Backward from the last bp_net_forward(): computes the loss and fills dW and
 * db of every layer (and the input gradients, see below). Pass `labels` (B
 * ints in [0, n_out)) for softmax-CE, `targets` (B, n_out) floats for MSE and
 * BCE; the other pointer must be NULL. The forward input X must still be
 * unchanged. *loss receives the mean loss (may be NULL). A non-finite loss
 * returns BP_ENUMERIC naming the first layer whose output was not finite. */
BP_API bp_status bp_net_backward(bp_net *net, const int32_t *labels,
                                 const float *targets, float *loss);

/* Ask backward for dL/dX of the network input (off by default: it costs a
 * GEMM). Gradients with respect to the inputs of layers 1.. are always kept.
 * A set-up call: with the scheduled backward it plans the backward again
 * (BP_ENOMEM leaves the net as it was). */
BP_API bp_status bp_net_set_input_grad(bp_net *net, int enable);

/* Read-only view of the gradient of the loss with respect to the input of
 * `layer` from the last backward: (B, n_in of that layer). For layer 0 only
 * when enabled with bp_net_set_input_grad(). */
BP_API bp_status bp_net_input_grad(const bp_net *net, size_t layer,
                                   const float **dX, size_t *rows, size_t *cols);

/* Read-only view of a layer's output activations from the last forward,
 * (B, n_out). For the last layer this is before the head. */
BP_API bp_status bp_net_output(const bp_net *net, size_t layer,
                               const float **A, size_t *rows, size_t *cols);

/* Parameter and gradient access. `count` must equal the tensor's size
 * (n_out * n_in for BP_WEIGHT, n_out for BP_BIAS). */
BP_API bp_status bp_net_get_param(const bp_net *net, size_t layer, bp_tensor which,
                                  float *dst, size_t count);
BP_API bp_status bp_net_set_param(bp_net *net, size_t layer, bp_tensor which,
                                  const float *src, size_t count);
BP_API bp_status bp_net_get_grad(const bp_net *net, size_t layer, bp_tensor which,
                                 float *dst, size_t count);
/* Overwrite a gradient (for gradients computed elsewhere, e.g. averaged
 * across processes, before bp_optim_step()). */
BP_API bp_status bp_net_set_grad(bp_net *net, size_t layer, bp_tensor which,
                                 const float *src, size_t count);
/* Read-only views, valid until the net is destroyed. rows/cols may be NULL. */
BP_API bp_status bp_net_param_view(const bp_net *net, size_t layer, bp_tensor which,
                                   const float **data, size_t *rows, size_t *cols);
BP_API bp_status bp_net_grad_view(const bp_net *net, size_t layer, bp_tensor which,
                                  const float **data, size_t *rows, size_t *cols);

/* ---------------------------------------------------------------- optimizer */

/* The update of one parameter p with gradient g at step t (t = number of
 * steps applied before this one, so 0 for the first), lr_t from the schedule:
 *
 *  clipping (if clip_norm > 0): n = sqrt(sum of g^2 over every tensor);
 *           if n > clip_norm, every g *= clip_norm / (n + 1e-6).
 *  SGD:     g' = g + wd p                 (wd only on weights, as below)
 *           momentum 0:  p -= lr_t g'
 *           momentum mu: v = mu v + g';  d = nesterov ? g' + mu v : v;  p -= lr_t d
 *  ADAM:    g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *           p -= lr_t (m / (1 - b1^(t+1))) / (sqrt(v / (1 - b2^(t+1))) + eps)
 *  ADAMW:   p -= lr_t wd p first, then ADAM with wd = 0 (decoupled decay).
 * These match PyTorch's SGD, Adam and AdamW (which also clip like
 * clip_grad_norm_), except that weight decay never applies to biases. */
typedef enum bp_optim_type {
    BP_OPTIM_SGD = 0,
    BP_OPTIM_ADAM,
    BP_OPTIM_ADAMW
} bp_optim_type;

/* Learning rate at step t (t = steps applied so far). */
typedef enum bp_schedule {
    BP_SCHED_CONSTANT = 0, /* lr_t = lr */
    BP_SCHED_STEP,         /* lr_t = lr gamma^floor(t / step_size) */
    BP_SCHED_COSINE        /* t < warmup_steps: lr_t = lr (t + 1) / warmup_steps;
                              else with q = min(1, (t - warmup) / max(1, total_steps - warmup)):
                              lr_t = min_lr + (lr - min_lr) (1 + cos(pi q)) / 2 */
} bp_schedule;

typedef struct bp_optim_config {
    bp_optim_type type;
    float lr;
    float momentum;      /* SGD: mu (0 = plain SGD) */
    int nesterov;        /* SGD: Nesterov momentum (needs momentum > 0) */
    float beta1, beta2;  /* Adam/AdamW */
    float eps;           /* Adam/AdamW, > 0 */
    float weight_decay;  /* applied to weights only, never to biases */
    float clip_norm;     /* > 0: rescale all gradients so their global L2 norm <= clip_norm */
    bp_schedule schedule;
    uint64_t step_size;  /* STEP */
    float gamma;         /* STEP */
    uint64_t warmup_steps; /* COSINE */
    uint64_t total_steps;  /* COSINE */
    float min_lr;          /* COSINE */
} bp_optim_config;

/* Fill *cfg with defaults for `type`: lr 0.01 (SGD) or 0.001 (Adam/AdamW),
 * betas 0.9/0.999, eps 1e-8, weight decay 0 (0.01 for AdamW), no clipping,
 * constant schedule. */
BP_API bp_status bp_optim_config_default(bp_optim_config *cfg, bp_optim_type type);

typedef struct bp_optim bp_optim;

/* Create an optimizer for `net`, allocating its state (zeroed) now. */
BP_API bp_status bp_optim_create(bp_optim **opt, bp_net *net, const bp_optim_config *cfg);
BP_API void bp_optim_destroy(bp_optim *opt);

/* Apply one update from the net's current gradients and advance the step
 * counter. If any gradient is not finite, or the update would make any
 * parameter or state value NaN or infinite (a diverging learning rate, a
 * squared gradient overflowing), nothing is changed and BP_ENUMERIC
 * names the tensor and layer. */
BP_API bp_status bp_optim_step(bp_optim *opt);

/* Learning rate the next step will use. */
BP_API float bp_optim_lr(const bp_optim *opt);
/* Number of steps applied so far; settable so training can resume. */
BP_API uint64_t bp_optim_steps(const bp_optim *opt);
BP_API bp_status bp_optim_set_steps(bp_optim *opt, uint64_t steps);
/* Number of state slots per parameter: 0 (plain SGD), 1 (momentum buffer),
 * 2 (Adam: first moment, second moment). */
BP_API size_t bp_optim_n_slots(const bp_optim *opt);
/* Copy a state slot of one tensor out of / into the optimizer. */
BP_API bp_status bp_optim_get_state(const bp_optim *opt, size_t layer, bp_tensor which,
                                    size_t slot, float *dst, size_t count);
BP_API bp_status bp_optim_set_state(bp_optim *opt, size_t layer, bp_tensor which,
                                    size_t slot, const float *src, size_t count);

/* One training step: forward, backward and update, on a batch. On
 * BP_ENUMERIC no parameter is changed. */
BP_API bp_status bp_train_step(bp_net *net, bp_optim *opt, const float *X,
                               const int32_t *labels, const float *targets,
                               size_t B, float *loss);

/* ------------------------------------------------------------------ dataset */

typedef struct bp_dataset bp_dataset;

/* An in-memory dataset of n rows of n_features floats, with either int
 * labels (n) or float targets (n, n_targets); the other pointer NULL and
 * n_targets 0 for labels. The data is copied. */
BP_API bp_status bp_dataset_create(bp_dataset **ds, size_t n, size_t n_features,
                                   const float *X, const int32_t *labels,
                                   const float *targets, size_t n_targets);
BP_API void bp_dataset_destroy(bp_dataset *ds);
BP_API size_t bp_dataset_size(const bp_dataset *ds);
BP_API size_t bp_dataset_n_features(const bp_dataset *ds);
/* Read-only views of the stored data (NULL where the dataset has none). */
BP_API const float *bp_dataset_features(const bp_dataset *ds);
BP_API const int32_t *bp_dataset_labels(const bp_dataset *ds);
BP_API const float *bp_dataset_targets(const bp_dataset *ds);

/* An unlabelled dataset (from a reader, for prediction) has neither labels
 * nor targets; training and evaluation reject it. */

/* Number of classes of a labelled dataset: the largest label + 1 (0 for a
 * dataset with float targets). */
BP_API size_t bp_dataset_n_classes(const bp_dataset *ds);
/* Float targets per row (0 for a labelled dataset). */
BP_API size_t bp_dataset_n_targets(const bp_dataset *ds);

/* Load an IDX pair, the MNIST / Fashion-MNIST format: `images` holds
 * unsigned bytes of dimension 3 (n, rows, cols) or 2 (n, features), `labels`
 * unsigned bytes of dimension 1 (n). With labels NULL the dataset is
 * unlabelled: usable for prediction only. Either file may be gzip-compressed
 * (detected from its first bytes). Pixels are scaled to [0, 1]. Every header
 * field is checked against the real file size before anything is allocated;
 * errors (BP_EIO, BP_EFORMAT) name the file, the byte offset and what was
 * expected versus found. */
BP_API bp_status bp_dataset_load_idx(bp_dataset **ds, const char *images, const char *labels);

typedef struct bp_csv_options {
    int header;          /* 1: the first line is a header and is skipped */
    char delimiter;      /* ',' by default */
    long label_column;   /* column of the label (or first target); < 0 counts from
                            the end: -1 is the last column */
    size_t n_targets;    /* 0: the label column holds integer class labels >= 0;
                            k >= 1: k float target columns start at label_column */
    int no_labels;       /* 1: every column is a feature and the dataset is
                            unlabelled (for prediction); label_column and
                            n_targets are then ignored */
} bp_csv_options;

/* Defaults: no header, ',', label in the last column, integer labels. */
BP_API bp_status bp_csv_options_default(bp_csv_options *opt);

/* Load a numeric CSV file: every row must have the same number of fields and
 * every field must parse completely as a number (labels as non-negative
 * integers). Empty lines at the end are ignored; CRLF line ends are accepted.
 * Errors name the file, the line and the column. */
BP_API bp_status bp_dataset_load_csv(bp_dataset **ds, const char *path,
                                     const bp_csv_options *opt);

/* Split ds into a training part and a validation part holding
 * round(fraction * n) rows (0 < fraction < 1, both parts non-empty), chosen
 * by a shuffle from `seed`, the same on every platform. ds is unchanged. */
BP_API bp_status bp_dataset_split(const bp_dataset *ds, double fraction, uint64_t seed,
                                  bp_dataset **train, bp_dataset **validation);

/* Per-feature mean and standard deviation of ds (each n_features floats);
 * a feature whose deviation is below 1e-6 gets std = 1 so it stays finite. */
BP_API bp_status bp_dataset_feature_stats(const bp_dataset *ds, float *mean, float *std,
                                          size_t n_features);
/* x = (x - mean) / std for every row, with statistics from
 * bp_dataset_feature_stats() on the training split only. */
BP_API bp_status bp_dataset_standardize(bp_dataset *ds, const float *mean, const float *std,
                                        size_t n_features);

/* One pass over ds in mini-batches of `batch` rows (<= the net's max_batch;
 * the last batch may be smaller), in an order shuffled from (seed, epoch)
 * alone, so any epoch can be replayed. *mean_loss is the sample-weighted mean
 * of the batch losses. Stops at the first failing step. */
BP_API bp_status bp_train_epoch(bp_net *net, bp_optim *opt, bp_dataset *ds,
                                size_t batch, uint64_t seed, uint64_t epoch,
                                float *mean_loss);

/* Called after each mini-batch of bp_train_epoch_progress() with the batches
 * done so far, the epoch's batch count and the batch's loss. Return 0 to go
 * on, non-zero to stop the epoch after this batch (e.g. on Ctrl-C). */
typedef int (*bp_progress_fn)(void *user, size_t batches_done, size_t n_batches,
                              float batch_loss);

/* bp_train_epoch with a progress callback (may be NULL). *batches_done (may
 * be NULL) receives the batches applied, fewer than the epoch's when the
 * callback stopped it; *mean_loss is then over the samples seen. */
BP_API bp_status bp_train_epoch_progress(bp_net *net, bp_optim *opt, bp_dataset *ds,
                                         size_t batch, uint64_t seed, uint64_t epoch,
                                         float *mean_loss, bp_progress_fn progress,
                                         void *user, size_t *batches_done);

/* Mean loss and accuracy of the net on ds. Accuracy: argmax against the
 * label (softmax-CE); fraction of outputs on the right side of 0.5 (BCE);
 * NaN for MSE. Either output pointer may be NULL. */
BP_API bp_status bp_evaluate(bp_net *net, const bp_dataset *ds, size_t batch,
                             float *loss, float *accuracy);

/* ------------------------------------------------------------ model files */

/* A model file holds the architecture and parameters, optionally the
 * optimizer (its configuration, step count and state), the training
 * position (seed and epochs completed: the shuffles and the initialisation
 * depend on nothing else, so training resumes exactly), and user metadata as
 * key/value strings. The format is specified in doc/model-format.md: little
 * endian, versioned, a CRC32 per section. */

typedef struct bp_kv {
    const char *key;
    const char *value;
} bp_kv;

typedef struct bp_model_info {
    uint32_t format_version;   /* of the file */
    unsigned library_version;  /* that wrote it, as bp_version() */
    int has_optimizer;
    uint64_t seed;             /* training seed */
    uint64_t epoch;            /* epochs completed */
} bp_model_info;

/* Write net (and opt when not NULL, which must belong to net) with the
 * training position and n_meta key/value pairs to `path`, atomically: a
 * temporary file in the same directory is written, flushed, fsync'ed and
 * renamed over `path`, then the directory is fsync'ed. On any failure
 * (BP_EIO) the previous file at `path` is intact and no temporary remains. */
BP_API bp_status bp_model_save(const char *path, const bp_net *net, const bp_optim *opt,
                               uint64_t seed, uint64_t epoch, const bp_kv *meta,
                               size_t n_meta);

/* Read a model file into a new net on ctx able to run batches of up to
 * max_batch rows. When opt is not NULL and the file holds an optimizer, *opt
 * receives it (else *opt is set to NULL). info and meta may be NULL; *meta
 * (n_meta pairs) is freed with bp_kv_free(). Truncated or corrupt files,
 * unknown versions, inconsistent shapes, absurd sizes and checksum mismatches
 * give BP_EFORMAT naming the section and offset; nothing is allocated beyond
 * what the file's real size allows. */
BP_API bp_status bp_model_load(const char *path, bp_ctx *ctx, size_t max_batch, bp_net **net,
                               bp_optim **opt, bp_model_info *info, bp_kv **meta,
                               size_t *n_meta);
BP_API void bp_kv_free(bp_kv *meta, size_t n_meta);

/* The configuration an optimizer was created with. */
BP_API bp_status bp_optim_config_get(const bp_optim *opt, bp_optim_config *cfg);

/* ---------------------------------------------------------- gradient check */

typedef struct bp_gradcheck_result {
    size_t layer;
    bp_tensor which;
    size_t n_checked;       /* entries compared */
    double max_rel_error;   /* max |g - fd| / max(|g|, |fd|, 1e-4) */
    double max_abs_error;
} bp_gradcheck_result;

/* Compare the net's analytic gradients on one batch with central finite
 * differences of a double-precision evaluation of the same net (step h,
 * e.g. 1e-5). Checks at most max_per_tensor entries of each tensor (spread
 * evenly; 0 = all). results must hold 2 * n_layers entries (W then b of
 * each layer). The net's parameters are unchanged afterwards. */
BP_API bp_status bp_gradcheck(bp_net *net, const float *X, const int32_t *labels,
                              const float *targets, size_t B, double h,
                              size_t max_per_tensor, bp_gradcheck_result *results,
                              size_t n_results);

/* -------------------------------------------------------------------- GEMM */

/* Row- or column-major storage and transposition, as in CBLAS. */
typedef enum bp_layout { BP_ROW_MAJOR = 101, BP_COL_MAJOR = 102 } bp_layout;
typedef enum bp_transpose { BP_NO_TRANS = 111, BP_TRANS = 112 } bp_transpose;

/* C = alpha op(A) op(B) + beta C with exactly cblas_sgemm's semantics, on
 * ctx's threads (ctx may be NULL: one thread per core). op(A) is M x K,
 * op(B) K x N, C M x N. beta = 0 overwrites C (NaN in C is not propagated);
 * alpha = 0 or K = 0 reads neither A nor B. Leading dimensions below the
 * minimum are rejected with BP_EINVAL. */
BP_API bp_status bp_sgemm(bp_ctx *ctx, bp_layout layout, bp_transpose transA,
                          bp_transpose transB, size_t M, size_t N, size_t K,
                          float alpha, const float *A, size_t lda, const float *B,
                          size_t ldb, float beta, float *C, size_t ldc);

#ifdef __cplusplus
}
#endif

#endif /* BACKPROP_H */
