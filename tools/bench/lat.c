/*
 * Latency recording for nsqpub-bench: exact samples or a log-linear
 * histogram, and nearest-rank percentiles.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SUB BENCH_HIST_SUB

static size_t hist_index(uint64_t v)
{
    if (v < 2 * SUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v); /* 7..63 */
    int shift = e - 6;
    uint64_t top = v >> shift; /* 64..127 */
    return 2 * SUB + (size_t)(e - 7) * SUB + (size_t)(top - 64);
}

/* The middle of bucket i, as the value reported for it. */
static uint64_t hist_value(size_t i)
{
    if (i < 2 * SUB)
        return i;
    size_t k = i - 2 * SUB;
    int shift = (int)(k / SUB) + 1;
    uint64_t top = SUB + k % SUB;
    return (top << shift) + ((uint64_t)1 << shift) / 2;
}

bool bench_lat_init(bench_lat_t *l, size_t samples)
{
    memset(l, 0, sizeof *l);
    atomic_init(&l->n, 0);
    atomic_init(&l->max, 0);
    if (samples) {
        l->v = malloc(samples * sizeof *l->v);
        l->cap = samples;
        return l->v != NULL;
    }
    l->h = calloc(1, sizeof *l->h);
    return l->h != NULL;
}

void bench_lat_free(bench_lat_t *l)
{
    free(l->v);
    free(l->h);
    l->v = NULL;
    l->h = NULL;
}

void bench_lat_add(bench_lat_t *l, uint64_t ns)
{
    size_t i = atomic_fetch_add_explicit(&l->n, 1, memory_order_relaxed);
    if (l->v) {
        if (i < l->cap)
            l->v[i] = ns;
    } else {
        atomic_fetch_add_explicit(&l->h->n[hist_index(ns)], 1,
                                  memory_order_relaxed);
    }
    uint64_t m = atomic_load_explicit(&l->max, memory_order_relaxed);
    while (ns > m &&
           !atomic_compare_exchange_weak_explicit(
               &l->max, &m, ns, memory_order_relaxed, memory_order_relaxed))
        ;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void bench_lat_percentiles(bench_lat_t *l, const unsigned *p, size_t np,
                           uint64_t *out)
{
    size_t n = atomic_load(&l->n);
    uint64_t max = atomic_load(&l->max);
    if (l->v && n > l->cap)
        n = l->cap;
    if (n == 0) {
        memset(out, 0, np * sizeof *out);
        return;
    }
    if (l->v)
        qsort(l->v, n, sizeof *l->v, cmp_u64);
    for (size_t k = 0; k < np; k++) {
        uint64_t rank = (p[k] * (uint64_t)n + 999) / 1000;
        if (rank < 1)
            rank = 1;
        if (rank > n)
            rank = n;
        if (l->v) {
            out[k] = l->v[rank - 1];
            continue;
        }
        /* The bucket's middle can pass the true maximum: clamp it. */
        uint64_t seen = 0;
        out[k] = max;
        for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
            seen += atomic_load_explicit(&l->h->n[i], memory_order_relaxed);
            if (seen >= rank) {
                uint64_t v = hist_value(i);
                out[k] = v < max ? v : max;
                break;
            }
        }
    }
}
