/* memslotcost: the kernel memory KVM allocates for memslots, measured as
 * /proc/meminfo deltas around registering them; the helper of bench/plug
 * --slot-sizes (it runs where the VMM runs, inside the test host too).
 *
 * usage: memslotcost --region-mib N --slot-mib S [--slot-mib S ...] [--repeat R]
 *
 * For each slot size S: creates a VM, maps N MiB of anonymous memory
 * (MAP_NORESERVE, never touched: registering a memslot does not fault its
 * pages in), reads /proc/meminfo, registers the N/S memslots that cover it
 * with KVM_SET_USER_MEMORY_REGION, reads /proc/meminfo again, then closes
 * the VM. KVM's per-memslot metadata (struct kvm_memory_slot, x86's
 * lpage_info, and rmap/gfn_track arrays where the MMU needs them) is
 * kmalloc'ed (Slab) or vmalloc'ed (VmallocUsed) when a slot is registered;
 * the sum of the SUnreclaim and VmallocUsed deltas is reported, as is the
 * MemFree drop, which also sees page-table pages and anything else. Each
 * slot size is measured R times (default 3); the median is printed, one
 * line per slot size:
 *
 *   MEMSLOTCOST slot_mib=S slots=K kernel_kib=X memfree_kib=Y sunreclaim_kib=A vmalloc_kib=B
 *
 * Other activity on the machine shows in the deltas: they are meaningful
 * when they are large against the noise (bench/plug prints them as is). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_SIZES 8
#define MAX_REPEAT 15

struct meminfo {
    long memfree, sunreclaim, vmalloc;      /* KiB */
};

static int read_meminfo(struct meminfo *m)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) {
        perror("memslotcost: /proc/meminfo");
        return -1;
    }
    char line[256];
    int found = 0;
    *m = (struct meminfo){0};
    while (fgets(line, sizeof(line), f)) {
        long v;
        if (sscanf(line, "MemFree: %ld kB", &v) == 1) {
            m->memfree = v;
            found++;
        } else if (sscanf(line, "SUnreclaim: %ld kB", &v) == 1) {
            m->sunreclaim = v;
            found++;
        } else if (sscanf(line, "VmallocUsed: %ld kB", &v) == 1) {
            m->vmalloc = v;
            found++;
        }
    }
    fclose(f);
    if (found != 3) {
        fprintf(stderr, "memslotcost: /proc/meminfo lacks MemFree, SUnreclaim or VmallocUsed\n");
        return -1;
    }
    return 0;
}

/* One measurement: deltas in KiB after registering region/slot memslots. */
static int measure(int kvm, uint64_t region, uint64_t slot, struct meminfo *delta)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        perror("memslotcost: KVM_CREATE_VM");
        return -1;
    }
    void *mem = mmap(NULL, region, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        fprintf(stderr, "memslotcost: mmap %llu MiB: %s\n", (unsigned long long)(region >> 20),
                strerror(errno));
        close(vm);
        return -1;
    }
    int rc = -1;
    struct meminfo before, after;
    if (read_meminfo(&before) != 0)
        goto out;
    /* Above 4 GiB, as minivmm's regions are; slot-aligned. */
    uint64_t gpa = 1ULL << 32;
    uint32_t n = (uint32_t)(region / slot);
    for (uint32_t i = 0; i < n; i++) {
        struct kvm_userspace_memory_region r = {
            .slot = i,
            .guest_phys_addr = gpa + (uint64_t)i * slot,
            .memory_size = slot,
            .userspace_addr = (uint64_t)(uintptr_t)mem + (uint64_t)i * slot,
        };
        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
            fprintf(stderr, "memslotcost: KVM_SET_USER_MEMORY_REGION slot %u of %u (%llu MiB): "
                    "%s\n", i, n, (unsigned long long)(slot >> 20), strerror(errno));
            goto out;
        }
    }
    if (read_meminfo(&after) != 0)
        goto out;
    delta->memfree = before.memfree - after.memfree;
    delta->sunreclaim = after.sunreclaim - before.sunreclaim;
    delta->vmalloc = after.vmalloc - before.vmalloc;
    rc = 0;
out:
    close(vm);          /* frees the memslots (once the last reference goes) */
    munmap(mem, region);
    return rc;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static long median(long *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_long);
    return v[n / 2];
}

static int usage(void)
{
    fprintf(stderr, "usage: memslotcost --region-mib N --slot-mib S [--slot-mib S ...] "
                    "[--repeat R]\n");
    return 2;
}

int main(int argc, char **argv)
{
    uint64_t region = 0, slots[MAX_SIZES];
    int n_slots = 0, repeat = 3;
    /* Options come in pairs: NAME VALUE. */
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage();
        char *end;
        unsigned long long v = strtoull(argv[i + 1], &end, 10);
        if (*end || v == 0)
            return usage();
        if (!strcmp(argv[i], "--region-mib"))
            region = v << 20;
        else if (!strcmp(argv[i], "--slot-mib") && n_slots < MAX_SIZES)
            slots[n_slots++] = v << 20;
        else if (!strcmp(argv[i], "--repeat") && v <= MAX_REPEAT)
            repeat = (int)v;
        else
            return usage();
    }
    if (!region || !n_slots)
        return usage();
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        perror("memslotcost: /dev/kvm");
        return 1;
    }
    for (int s = 0; s < n_slots; s++) {
        if (region % slots[s]) {
            fprintf(stderr, "memslotcost: %llu MiB slots do not divide %llu MiB\n",
                    (unsigned long long)(slots[s] >> 20), (unsigned long long)(region >> 20));
            return 2;
        }
        long kernel[MAX_REPEAT], memfree[MAX_REPEAT], sunr[MAX_REPEAT], vmal[MAX_REPEAT];
        for (int r = 0; r < repeat; r++) {
            struct meminfo d;
            if (measure(kvm, region, slots[s], &d) != 0)
                return 1;
            kernel[r] = d.sunreclaim + d.vmalloc;
            memfree[r] = d.memfree;
            sunr[r] = d.sunreclaim;
            vmal[r] = d.vmalloc;
            /* The VM's memory goes back after an SRCU grace period and
             * RCU callbacks: let them run before the next baseline. */
            usleep(200000);
        }
        printf("MEMSLOTCOST slot_mib=%llu slots=%llu kernel_kib=%ld memfree_kib=%ld "
               "sunreclaim_kib=%ld vmalloc_kib=%ld\n", (unsigned long long)(slots[s] >> 20),
               (unsigned long long)(region / slots[s]), median(kernel, repeat),
               median(memfree, repeat), median(sunr, repeat), median(vmal, repeat));
        fflush(stdout);
    }
    close(kvm);
    return 0;
}
