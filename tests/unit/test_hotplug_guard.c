/* The host memory bound of a hotplug region: the guard (userfaultfd) backs
 * first touches of plugged blocks and refuses unplugged ones, and removing
 * a slot discards all of it. Faults come from real accesses: this thread's
 * own loads and stores for plugged memory, and process_vm_readv/writev
 * (which fault through get_user_pages, as KVM does, and fail with EFAULT
 * where a vCPU's KVM_RUN would) for unplugged memory. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sys/prctl.h>
#include <sys/wait.h>

#include "guard_watch.h"
#include "unit.h"
#include "vmm/anon_mem.h"
#include "vmm/hotplug/guard.h"
#include "vmm/hotplug/mem.h"

#define MiB (1ULL << 20)
#define GPA (64ULL << 30)
#define REGION (256 * MiB)
#define SLOT (64 * MiB)
#define BLOCK (2 * MiB)

struct seen {
    unsigned violations, failures;
    uint64_t last_gpa;
    bool last_write;
    char who[128];
    pthread_mutex_t who_lock;
};

static void on_violation(void *opaque, struct hotplug_mem *hm, uint64_t gpa, bool write,
                         const char *who)
{
    struct seen *s = opaque;
    (void)hm;
    pthread_mutex_lock(&s->who_lock);
    snprintf(s->who, sizeof(s->who), "%s", who);
    pthread_mutex_unlock(&s->who_lock);
    __atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
    s->last_gpa = gpa;
    s->last_write = write;
}

/* A copy of the thread named in the last violation (the guard's thread
 * writes it; the kernel's ordering through the fault is not TSan's). */
static const char *last_who(struct seen *s)
{
    static char copy[128];
    pthread_mutex_lock(&s->who_lock);
    snprintf(copy, sizeof(copy), "%s", s->who);
    pthread_mutex_unlock(&s->who_lock);
    return copy;
}

static void on_failure(void *opaque, struct hotplug_mem *hm, uint64_t gpa, int err)
{
    struct seen *s = opaque;
    (void)hm;
    (void)err;
    s->last_gpa = gpa;
    __atomic_add_fetch(&s->failures, 1, __ATOMIC_SEQ_CST);
}

/* A read or write of 8 bytes at p the way the kernel does for KVM: through
 * get_user_pages. Returns 0 or the errno. */
static int remote_access(void *p, bool write)
{
    uint64_t word = 0x5a5a5a5a5a5a5a5aULL;
    struct iovec local = {.iov_base = &word, .iov_len = sizeof(word)};
    struct iovec remote = {.iov_base = p, .iov_len = sizeof(word)};
    ssize_t n = write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                      : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    return n == (ssize_t)sizeof(word) ? 0 : errno;
}

/* What a kernel worker does for KVM (an x86 async page fault): a fetch of
 * this process's page from a thread that is not this process's. A child
 * reading through process_vm_readv is one. Returns its errno (0: read). */
static int foreign_access(void *p)
{
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        uint64_t word;
        struct iovec local = {.iov_base = &word, .iov_len = sizeof(word)};
        struct iovec remote = {.iov_base = p, .iov_len = sizeof(word)};
        ssize_t n = process_vm_readv(parent, &local, 1, &remote, 1, 0);
        _exit(n == (ssize_t)sizeof(word) ? 0 : errno > 0 && errno < 126 ? errno : 126);
    }
    if (child < 0)
        return -1;
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static bool start_guard(struct hotplug_guard *g, struct hotplug_mem *hm, struct seen *s)
{
    if (!guard_watch(g, hm))
        return false;
    g->on_violation = on_violation;
    g->on_host_failure = on_failure;
    g->opaque = s;
    CHECK_EQ(hotplug_guard_start(g), 0);
    return true;
}

/* A 256 MiB region of 2 MiB blocks in 64 MiB slots, watched by a running
 * guard. False (and nothing left to free) when either cannot be had. */
static bool guarded_region(struct hotplug_mem *hm, struct hotplug_guard *g, struct seen *s)
{
    CHECK_EQ(hotplug_mem_init(hm, -1, "g", GPA, REGION, SLOT, BLOCK, 0, 0, false), 0);
    if (start_guard(g, hm, s))
        return true;
    hotplug_mem_destroy(hm);
    return false;
}

TEST(guard_backs_plugged_blocks_and_refuses_unplugged_ones)
{
    struct hotplug_mem hm;
    struct hotplug_guard g;
    struct seen s = {.who_lock = PTHREAD_MUTEX_INITIALIZER};
    if (!guarded_region(&hm, &g, &s))
        return;
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT, BLOCK), 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);             /* plugged, not yet touched */
    memset(hm.hva + SLOT + 4096, 0xab, 4096);           /* first touch: backed */
    CHECK_EQ(hotplug_mem_resident(&hm), BLOCK);
    CHECK_EQ(hm.hva[SLOT + 4096], 0xab);
    CHECK_EQ(remote_access(hm.hva + SLOT + 8192, true), 0);
    CHECK_EQ(s.violations, 0);

    /* The unplugged block beside it, in the same (registered) slot. */
    CHECK_EQ(remote_access(hm.hva + SLOT + BLOCK, false), EFAULT);
    CHECK_EQ(s.violations, 1);
    CHECK_EQ(s.last_gpa, GPA + SLOT + BLOCK);
    CHECK(!s.last_write);
    /* This very thread faulted (get_user_pages on its behalf): one of ours. */
    CHECK_STR_CONTAINS(last_who(&s), "minivmm thread ");
    CHECK_EQ(remote_access(hm.hva + 3 * SLOT + 12288, true), EFAULT);
    CHECK_EQ(s.violations, 2);
    CHECK_EQ(s.last_gpa, GPA + 3 * SLOT + 12288);
    CHECK(s.last_write);
    CHECK_EQ(hotplug_mem_resident(&hm), BLOCK);         /* nothing allocated for them */
    CHECK_EQ(hm.blocked_accesses, 2);

    /* Unplugged again: gone, and the block is out of bounds from now on. */
    CHECK_EQ(hotplug_mem_unplug(&hm, SLOT, BLOCK), 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    CHECK_EQ(remote_access(hm.hva + SLOT + 4096, false), EFAULT);
    CHECK_EQ(s.violations, 3);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    CHECK_EQ(s.failures, 0);
    hotplug_guard_destroy(&g);
    hotplug_mem_destroy(&hm);
}

TEST(hostile_cycles_never_exceed_the_plugged_size)
{
    /* The attack: one block plugged per slot in turn, every page
     * of the unplugged blocks beside it read and written, then unplugged. */
    struct hotplug_mem hm;
    struct hotplug_guard g;
    struct seen s = {.who_lock = PTHREAD_MUTEX_INITIALIZER};
    if (!guarded_region(&hm, &g, &s))
        return;
    uint64_t worst = 0;
    unsigned refused = 0;
    for (uint64_t slot = 0; slot < REGION / SLOT; slot++) {
        uint64_t plugged = slot * SLOT + SLOT / 2;
        CHECK_EQ(hotplug_mem_plug(&hm, plugged, BLOCK), 0);
        memset(hm.hva + plugged, 1, BLOCK);
        for (uint64_t off = slot * SLOT; off < (slot + 1) * SLOT; off += 16 * 4096) {
            if (off >= plugged && off < plugged + BLOCK)
                continue;
            refused += remote_access(hm.hva + off, false) == EFAULT;
            refused += remote_access(hm.hva + off + 4096, true) == EFAULT;
            uint64_t r = hotplug_mem_resident(&hm);
            worst = r > worst ? r : worst;
        }
        CHECK_EQ(hotplug_mem_unplug(&hm, plugged, BLOCK), 0);
        CHECK_EQ(hotplug_mem_resident(&hm), 0);
    }
    printf("  %u hostile accesses refused; host memory at most %llu KiB with %llu KiB plugged\n",
           refused, (unsigned long long)(worst >> 10), (unsigned long long)(BLOCK >> 10));
    CHECK_EQ(worst, BLOCK);
    CHECK_EQ(refused, 2 * 4 * ((SLOT - BLOCK) / (16 * 4096)));
    CHECK_EQ(s.violations, refused);
    hotplug_guard_destroy(&g);
    hotplug_mem_destroy(&hm);
}

/* An unplug in steps (the driver's, block by block towards a smaller
 * requested size) leaves the slots it empties registered until its last
 * step (hotplug_mem_unplug_step): such an idle slot holds no memory and
 * backs none, exactly like the unplugged blocks of a partly plugged slot. */
TEST(an_idle_slot_holds_and_backs_nothing)
{
    struct hotplug_mem hm;
    struct hotplug_guard g;
    struct seen s = {.who_lock = PTHREAD_MUTEX_INITIALIZER};
    if (!guarded_region(&hm, &g, &s))
        return;
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 2 * SLOT), 0);
    memset(hm.hva + SLOT, 1, SLOT);                     /* slot 1 all backed */
    CHECK_EQ(hotplug_mem_resident(&hm), SLOT);
    CHECK_EQ(hotplug_mem_unplug_step(&hm, SLOT, SLOT, true), 0);
    CHECK(hm.slot_live[1]);                             /* idle: still registered */
    CHECK_EQ(hm.slots_registered, 2);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);             /* but its memory is gone */
    CHECK_EQ(remote_access(hm.hva + SLOT + 4096, true), EFAULT);
    CHECK_EQ(remote_access(hm.hva + 2 * SLOT - 4096, false), EFAULT);
    CHECK_EQ(s.violations, 2);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);

    /* Plugged again, the idle slot is simply used. */
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT, BLOCK), 0);
    CHECK_EQ(hm.slots_registered, 2);
    CHECK_EQ(hotplug_mem_unplug_step(&hm, SLOT, BLOCK, true), 0);
    /* The last step removes every idle slot, and the one it empties. */
    CHECK_EQ(hotplug_mem_unplug_step(&hm, 0, SLOT, false), 0);
    CHECK(!hm.slot_live[0] && !hm.slot_live[1]);
    CHECK_EQ(hm.slots_registered, 0);
    CHECK_EQ(s.failures, 0);
    hotplug_guard_destroy(&g);
    hotplug_mem_destroy(&hm);
}

TEST(removing_a_slot_discards_all_of_it)
{
    /* Without a guard (nothing stops the stray write), what reached the slot
     * outside the unplugged block still goes when the slot empties. */
    struct hotplug_mem hm;
    struct mem_backing base = {.kind = MEM_BACKING_BASE};   /* so one touch is one page */
    CHECK_EQ(hotplug_mem_init(&hm, -1, "g", GPA, REGION, SLOT, BLOCK, 0, &base, false), 0);
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT, BLOCK), 0);
    hm.hva[SLOT + 20 * BLOCK] = 1;                      /* an unplugged block's page */
    hm.hva[SLOT] = 1;
    CHECK_EQ(hotplug_mem_resident(&hm), 2 * 4096);
    /* Another slot's plugged memory is left alone. */
    CHECK_EQ(hotplug_mem_plug(&hm, 2 * SLOT, BLOCK), 0);
    hm.hva[2 * SLOT] = 1;
    /* Nor does it wait: with no guard an emptied slot cannot stay idle. */
    CHECK_EQ(hotplug_mem_unplug_step(&hm, SLOT, BLOCK, true), 0);
    CHECK(!hm.slot_live[1]);
    CHECK_EQ(hm.slots_registered, 1);
    CHECK_EQ(hotplug_mem_resident(&hm), 4096);
    CHECK_EQ(hm.hva[2 * SLOT], 1);
    hotplug_mem_destroy(&hm);
}

TEST(guarded_plug_backs_with_huge_pages_and_keeps_one_vma)
{
    /* A guarded region is backed when plugged (as in minivmm, prealloc):
     * the range leaves the guard's watch while it is populated, gets huge
     * pages, and rejoins it; the mapping stays one VMA, and unplugged
     * blocks are still refused afterwards. */
    if (!anon_mem_thp_size() || !unit_thp_enabled()) {
        unit_skip("no transparent huge pages on this host");
        return;
    }
    struct hotplug_mem hm;
    struct hotplug_guard g;
    struct seen s = {.who_lock = PTHREAD_MUTEX_INITIALIZER};
    CHECK_EQ(hotplug_mem_init(&hm, -1, "g", GPA, REGION, SLOT, BLOCK, 0, 0, true), 0);
    if (!start_guard(&g, &hm, &s)) {
        hotplug_mem_destroy(&hm);
        return;
    }
    CHECK(hm.thp);
    for (uint64_t slot = 0; slot < REGION / SLOT; slot++)
        CHECK_EQ(hotplug_mem_plug(&hm, slot * SLOT + 8 * BLOCK, 4 * BLOCK), 0);
    struct unit_smaps sm;
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    printf("  plugged %llu MiB: %u VMA(s), Rss %llu MiB, AnonHugePages %llu MiB\n",
           (unsigned long long)(4 * 4 * BLOCK >> 20), sm.vmas, sm.rss >> 20, sm.anon_huge >> 20);
    CHECK_EQ(sm.vmas, 1);
    CHECK_EQ(sm.rss, 16 * BLOCK);
    CHECK_EQ(sm.anon_huge, 16 * BLOCK);
    CHECK_EQ(hotplug_mem_resident(&hm), 16 * BLOCK);
    memset(hm.hva + 8 * BLOCK, 0x5a, 4 * BLOCK);          /* no fault: already backed */
    CHECK_EQ(remote_access(hm.hva + 7 * BLOCK, true), EFAULT);
    CHECK_EQ(s.violations, 1);
    CHECK_EQ(hotplug_mem_resident(&hm), 16 * BLOCK);
    for (uint64_t slot = 0; slot < REGION / SLOT; slot++)
        CHECK_EQ(hotplug_mem_unplug(&hm, slot * SLOT + 8 * BLOCK, 4 * BLOCK), 0);
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    CHECK_EQ(sm.rss, 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    CHECK_EQ(remote_access(hm.hva + 8 * BLOCK, false), EFAULT);   /* unplugged again */
    CHECK_EQ(s.violations, 2);
    CHECK_EQ(s.failures, 0);
    hotplug_guard_destroy(&g);
    hotplug_mem_destroy(&hm);
}

TEST(a_foreign_threads_late_fetch_is_refused_without_blaming_the_guest)
{
    struct hotplug_mem hm;
    struct hotplug_guard g;
    struct seen s = {.who_lock = PTHREAD_MUTEX_INITIALIZER};
    if (!guarded_region(&hm, &g, &s))
        return;
    /* Where Yama restricts ptrace, let the child read this process. */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);

    /* An unplugged block: the fetch fails, nothing is allocated, and it is
     * not the guest's doing (it may have run after the guest's unplug). */
    CHECK_EQ(foreign_access(hm.hva + SLOT + 4096), EFAULT);
    CHECK_EQ(s.violations, 0);
    CHECK_EQ(hm.late_fetches, 1);
    CHECK_EQ(hm.n_late_refused, 1);
    CHECK_EQ(hm.blocked_accesses, 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    /* The page stays inaccessible: a touch by the guest's own vCPU fails
     * at once (KVM_RUN EFAULT in minivmm), still allocating nothing. */
    CHECK_EQ(remote_access(hm.hva + SLOT + 4096, false), EFAULT);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);

    /* Plugged: accessible again, backed on first touch. */
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT, BLOCK), 0);
    CHECK_EQ(hm.n_late_refused, 0);
    memset(hm.hva + SLOT + 4096, 0xcd, 4096);
    CHECK_EQ(hotplug_mem_resident(&hm), BLOCK);
    /* A foreign fetch of a plugged block is backed like any touch. */
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT + BLOCK, BLOCK), 0);
    CHECK_EQ(foreign_access(hm.hva + SLOT + BLOCK + 8192), 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 2 * BLOCK);
    CHECK_EQ(s.violations, 0);

    /* More late fetches at once than any race of a well-behaved guest
     * makes: the last is the guest's doing. */
    for (unsigned i = 0; i < HOTPLUG_MEM_MAX_LATE; i++)
        CHECK_EQ(foreign_access(hm.hva + 2 * SLOT + (uint64_t)i * 4096), EFAULT);
    CHECK_EQ(s.violations, 0);
    CHECK_EQ(foreign_access(hm.hva + 2 * SLOT + HOTPLUG_MEM_MAX_LATE * 4096), EFAULT);
    CHECK_EQ(s.violations, 1);
    CHECK_STR_CONTAINS(last_who(&s), "not minivmm's");
    CHECK_EQ(hotplug_mem_resident(&hm), 2 * BLOCK);
    CHECK_EQ(s.failures, 0);
    hotplug_guard_destroy(&g);
    hotplug_mem_destroy(&hm);
}

#ifdef MINIVMM_TEST_HOOKS
struct toucher {
    uint8_t *p;
    int rc;
};

static void *touch_remotely(void *arg)
{
    struct toucher *t = arg;
    t->rc = remote_access(t->p, true);
    return NULL;
}
#endif

/* A vCPU's first touch of a plugged block is backed with the guard's lock
 * dropped: a plug meanwhile (the driver's next request) goes through at
 * once, and an unplug of the block being backed waits for it and then
 * frees it. The test hook holds the populate open for a second. */
TEST(a_plug_does_not_wait_for_a_first_touch_being_backed)
{
#ifndef MINIVMM_TEST_HOOKS
    unit_skip("needs a test build (-DMINIVMM_TEST_HOOKS=ON: the ASan and TSan builds)");
#else
    setenv("MINIVMM_TEST_GUARD_POPULATE_MS", "1000", 1);
    struct hotplug_mem hm;
    struct hotplug_guard g;
    struct seen s = {.who_lock = PTHREAD_MUTEX_INITIALIZER};
    if (!guarded_region(&hm, &g, &s)) {
        unsetenv("MINIVMM_TEST_GUARD_POPULATE_MS");
        return;
    }
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT, BLOCK), 0);
    struct toucher t = {.p = hm.hva + SLOT + 4096};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, touch_remotely, &t), 0);
    bool in_flight = false;
    for (int i = 0; i < 10000 && !in_flight; i++) {
        pthread_mutex_lock(&hm.backing_lock);
        in_flight = hm.populating;
        pthread_mutex_unlock(&hm.backing_lock);
        if (!in_flight)
            usleep(1000);
    }
    CHECK(in_flight);

    /* The next block of the same slot, while the first touch is backed. */
    CHECK_EQ(hotplug_mem_plug(&hm, SLOT + BLOCK, BLOCK), 0);
    CHECK_EQ(__atomic_load_n(&hm.first_touch_ns, __ATOMIC_SEQ_CST), 0);

    /* The block being backed: the unplug waits for the populate, then its
     * discard frees what it backed. */
    CHECK_EQ(hotplug_mem_unplug(&hm, SLOT, BLOCK), 0);
    CHECK(__atomic_load_n(&hm.first_touch_ns, __ATOMIC_SEQ_CST) > 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    pthread_join(th, NULL);
    /* The touch retried after the populate: before the discard it landed,
     * after it the block was unplugged (the guest's doing). */
    CHECK(t.rc == 0 || t.rc == EFAULT);
    CHECK_EQ(s.violations, t.rc == EFAULT ? 1 : 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    CHECK_EQ(s.failures, 0);
    hotplug_guard_destroy(&g);
    hotplug_mem_destroy(&hm);
    unsetenv("MINIVMM_TEST_GUARD_POPULATE_MS");
#endif
}
