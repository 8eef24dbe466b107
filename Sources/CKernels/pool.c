// A small worker pool for decode-sized jobs (tens of microseconds each, ~60 per token).
//
// Dispatch and OpenBLAS's own threads cost several microseconds per job; here workers spin on an
// atomic word for a short while after each job, so back-to-back jobs start within ~1 us, and
// sleep on a condition variable when the caller goes quiet (no CPU burnt between requests).
//
// The job word packs (generation << 32 | ntasks << 16 | next index): a worker claims a task with
// one compare-and-swap that also proves the job is still the one it saw, so a late worker can
// never run a task of the next job with the previous job's function.
#include "ckernels.h"
#include "ck_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if CK_X86
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define CK_MAX_TASKS_PER_JOB 0xffffu
// How long an idle worker spins before sleeping.
#define CK_SPIN_NS 300000L

struct ck_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t run_lock; // one job at a time
    _Atomic uint64_t job;     // generation << 32 | ntasks << 16 | next
    _Atomic size_t done;
    _Atomic int stop;
    ck_task_fn fn;
    void *context;
    size_t task_offset;
    size_t total_tasks;
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    _Atomic int sleepers;
};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

// Claims and runs tasks of generation `gen` until none is left.
static void run_tasks(ck_pool *p, uint32_t gen) {
    uint64_t v = atomic_load_explicit(&p->job, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen) return;
        uint32_t ntasks = (uint32_t)(v >> 16) & 0xffffu, next = (uint32_t)v & 0xffffu;
        if (next >= ntasks) return;
        if (!atomic_compare_exchange_weak_explicit(&p->job, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        // The job cannot finish (and its fields cannot change) before this task is counted done.
        p->fn(p->context, p->task_offset + next, p->total_tasks);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        v = atomic_load_explicit(&p->job, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    ck_pool *p = arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t gen;
        long spin_start = 0;
        unsigned spins = 0;
        while ((gen = (uint32_t)(atomic_load_explicit(&p->job, memory_order_acquire) >> 32)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
            cpu_relax();
            if ((++spins & 255) == 0) {
                // On a busy machine the caller may be waiting for a core this spin holds.
                sched_yield();
                long t = now_ns();
                if (spin_start == 0) spin_start = t;
                else if (t - spin_start > CK_SPIN_NS) {
                    pthread_mutex_lock(&p->sleep_lock);
                    atomic_fetch_add(&p->sleepers, 1);
                    while ((uint32_t)(atomic_load(&p->job) >> 32) == seen && !atomic_load(&p->stop))
                        pthread_cond_wait(&p->wake, &p->sleep_lock);
                    atomic_fetch_sub(&p->sleepers, 1);
                    pthread_mutex_unlock(&p->sleep_lock);
                    spin_start = 0;
                }
            }
        }
        seen = gen;
        run_tasks(p, gen);
    }
}

ck_pool *ck_pool_create(int threads) {
    if (threads < 1) return NULL;
    ck_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->sleep_lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->job, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleepers, 0);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
        if (!p->workers) { free(p); return NULL; }
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
                p->threads = i + 1; // join the ones that started
                ck_pool_destroy(p);
                return NULL;
            }
        }
    }
    return p;
}

void ck_pool_destroy(ck_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->sleep_lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->sleep_lock);
    for (int i = 0; i < p->threads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->sleep_lock);
    pthread_mutex_destroy(&p->run_lock);
    free(p);
}

int ck_pool_threads(const ck_pool *p) { return p ? p->threads : 1; }

void ck_pool_run(ck_pool *p, ck_task_fn fn, void *context, size_t ntasks) {
    if (ntasks == 0) return;
    if (!p || p->threads <= 1 || ntasks == 1) {
        for (size_t i = 0; i < ntasks; i++) fn(context, i, ntasks);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    for (size_t offset = 0; offset < ntasks; offset += CK_MAX_TASKS_PER_JOB) {
        size_t n = ntasks - offset < CK_MAX_TASKS_PER_JOB ? ntasks - offset : CK_MAX_TASKS_PER_JOB;
        p->fn = fn;
        p->context = context;
        p->task_offset = offset;
        p->total_tasks = ntasks;
        atomic_store_explicit(&p->done, 0, memory_order_relaxed);
        uint64_t old = atomic_load_explicit(&p->job, memory_order_relaxed);
        uint32_t gen = (uint32_t)(old >> 32) + 1;
        // The release store publishes fn/context/offset/done with the new generation.
        atomic_store_explicit(&p->job, ((uint64_t)gen << 32) | ((uint64_t)n << 16), memory_order_seq_cst);
        if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) {
            pthread_mutex_lock(&p->sleep_lock);
            pthread_cond_broadcast(&p->wake);
            pthread_mutex_unlock(&p->sleep_lock);
        }
        run_tasks(p, gen);
        unsigned spins = 0;
        while (atomic_load_explicit(&p->done, memory_order_acquire) < n) {
            cpu_relax();
            // A worker descheduled by another process: let it run instead of spinning.
            if (++spins > 4096) sched_yield();
        }
    }
    pthread_mutex_unlock(&p->run_lock);
}
