/* exitcost: what the KVM primitives a VMM's plug path leans on cost where it
 * runs; the helper of bench/exitcost (it runs inside the test host, which has
 * no Python). The nested test host's emulator (QEMU 7.2 or 10, TCG) prices
 * each primitive differently from real hardware; comparing their ratios
 * under each emulator with real hardware's says which emulator distorts a
 * comparison of two VMMs less (docs/testing.md, "The test host's emulator").
 *
 * usage: exitcost [--mmio N] [--pages N] [--slots N]
 *
 * A one-vCPU VM without an in-kernel irqchip runs a five-instruction loop in
 * flat 32-bit protected mode (no paging), set up through KVM_SET_SREGS:
 *     loop: mov [edi], eax ; add edi, ebx ; dec ecx ; jnz loop ; hlt
 * with edi, ebx, ecx chosen per measurement. Each line printed is
 *     EXITCOST name=NAME n=N total_ms=T per_us=U
 *   mmio_user     N writes to a guest-physical address no memslot covers:
 *                 each is an exit to this process (KVM_EXIT_MMIO) and a new
 *                 KVM_RUN, what virtio-mmio's InterruptStatus read and
 *                 InterruptACK write cost minivmm per interrupt
 *   mmio_kernel   N writes to an address with a KVM_IOEVENTFD: an exit the
 *                 kernel completes without returning to this process (a
 *                 queue notify of minivmm's and QEMU's alike)
 *   touch_fresh   the guest writes once to each of N 4 KiB pages of a memfd
 *                 slot nothing has touched: a nested page fault that
 *                 allocates and zeroes a shmem page (a guest's first touch)
 *   populate      fallocate() of N pages of another memfd in this process,
 *                 no guest involved: the host-side allocation and zeroing a
 *                 VMM does when it backs memory eagerly (minivmm's guard)
 *   touch_backed  the guest writes once to each of those N now-backed
 *                 pages: a nested page fault that only maps a page
 *   slot_update   N times KVM_SET_USER_MEMORY_REGION adding a 1 GiB slot
 *                 (nothing mapped) and deleting it again; per_us is per
 *                 ioctl (a memslot update of a plug or unplug)
 * Exit status 0 if everything ran, 1 otherwise (message on stderr). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CODE_GPA 0x1000u
#define LOW_SIZE (2u << 20)            /* slot 0: the code page and some room */
#define DATA_GPA 0x10000000u           /* slot 1: pages the guest touches */
#define POP_GPA 0x50000000u            /* slot 2: pages populated beforehand */
#define MMIO_GPA 0xd0000000u           /* no slot: an exit to user space */
#define IOEVENT_GPA 0xd0001000u        /* no slot, an ioeventfd */
#define SPARE_GPA 0x100000000ull       /* slot 3: added and deleted */
#define PAGE 4096u

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("exitcost: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(errno));
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime");
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void report(const char *name, unsigned long n, double ms)
{
    printf("EXITCOST name=%s n=%lu total_ms=%.3f per_us=%.3f\n", name, n, ms,
           n ? ms * 1e3 / (double)n : 0.0);
    fflush(stdout);
}

struct vm {
    int kvm, vm, vcpu;
    struct kvm_run *run;
};

static void set_slot(struct vm *v, uint32_t slot, uint64_t gpa, uint64_t size, void *mem)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r) != 0)
        die("KVM_SET_USER_MEMORY_REGION slot %u gpa 0x%llx size 0x%llx", slot,
            (unsigned long long)gpa, (unsigned long long)size);
}

/* A shared memfd mapping of size bytes, as minivmm backs guest RAM. */
static void *memfd_map(const char *name, uint64_t size, int *fd_out)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        die("memfd_create %s", name);
    if (ftruncate(fd, (off_t)size) != 0)
        die("ftruncate %s to %llu", name, (unsigned long long)size);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap %s", name);
    *fd_out = fd;
    return p;
}

static void setup_vcpu(struct vm *v)
{
    struct kvm_sregs s;
    if (ioctl(v->vcpu, KVM_GET_SREGS, &s) != 0)
        die("KVM_GET_SREGS");
    /* Flat 4 GiB segments, 32-bit code, protection on, paging off. */
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 11, .present = 1,
        .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
    };
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 3;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr0 = 0x11; /* PE, ET */
    s.cr4 = 0;
    s.efer = 0;
    if (ioctl(v->vcpu, KVM_SET_SREGS, &s) != 0)
        die("KVM_SET_SREGS");
}

/* Runs the loop with edi = addr, ebx = stride, ecx = count until its hlt;
 * returns the number of exits to user space other than the hlt's. */
static unsigned long run_loop(struct vm *v, uint32_t addr, uint32_t stride, uint32_t count)
{
    struct kvm_regs r;
    memset(&r, 0, sizeof(r));
    r.rip = CODE_GPA;
    r.rflags = 2;
    r.rdi = addr;
    r.rbx = stride;
    r.rcx = count;
    if (ioctl(v->vcpu, KVM_SET_REGS, &r) != 0)
        die("KVM_SET_REGS");
    unsigned long exits = 0;
    for (;;) {
        if (ioctl(v->vcpu, KVM_RUN, 0) != 0) {
            if (errno == EINTR)
                continue;
            die("KVM_RUN");
        }
        switch (v->run->exit_reason) {
        case KVM_EXIT_HLT:
            return exits;
        case KVM_EXIT_MMIO:
            if (v->run->mmio.phys_addr != MMIO_GPA) {
                errno = 0;
                die("unexpected MMIO exit at 0x%llx",
                    (unsigned long long)v->run->mmio.phys_addr);
            }
            exits++;
            break;
        default:
            errno = 0;
            die("unexpected exit reason %u", v->run->exit_reason);
        }
    }
}

static unsigned long arg(int argc, char **argv, const char *name, unsigned long def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) {
            char *end;
            unsigned long x = strtoul(argv[i + 1], &end, 0);
            if (*end || x == 0 || x > (1ul << 20)) {
                errno = EINVAL;
                die("%s %s: want 1..%lu", name, argv[i + 1], 1ul << 20);
            }
            return x;
        }
    return def;
}

int main(int argc, char **argv)
{
    unsigned long n_mmio = arg(argc, argv, "--mmio", 2000);
    unsigned long n_pages = arg(argc, argv, "--pages", 16384);
    unsigned long n_slots = arg(argc, argv, "--slots", 200);
    for (int i = 1; i < argc; i += 2)
        if (strcmp(argv[i], "--mmio") && strcmp(argv[i], "--pages") &&
            strcmp(argv[i], "--slots")) {
            errno = EINVAL;
            die("usage: exitcost [--mmio N] [--pages N] [--slots N]");
        }

    struct vm v;
    v.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (v.kvm < 0)
        die("open /dev/kvm");
    v.vm = ioctl(v.kvm, KVM_CREATE_VM, 0);
    if (v.vm < 0)
        die("KVM_CREATE_VM");
    /* SVM and VMX want a TSS address before a vCPU runs in protected mode. */
    if (ioctl(v.vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) != 0)
        die("KVM_SET_TSS_ADDR");
    int fd;
    uint8_t *low = memfd_map("exitcost-low", LOW_SIZE, &fd);
    /* mov [edi],eax; add edi,ebx; dec ecx; jnz -7; hlt */
    static const uint8_t loop[] = {0x89, 0x07, 0x01, 0xdf, 0x49, 0x75, 0xf9, 0xf4};
    memcpy(low + CODE_GPA, loop, sizeof(loop));
    set_slot(&v, 0, 0, LOW_SIZE, low);

    uint64_t data_size = (uint64_t)n_pages * PAGE;
    void *data = memfd_map("exitcost-data", data_size, &fd);
    set_slot(&v, 1, DATA_GPA, data_size, data);
    int pop_fd;
    void *pop = memfd_map("exitcost-populated", data_size, &pop_fd);
    set_slot(&v, 2, POP_GPA, data_size, pop);

    v.vcpu = ioctl(v.vm, KVM_CREATE_VCPU, 0);
    if (v.vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(v.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE");
    v.run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v.vcpu, 0);
    if (v.run == MAP_FAILED)
        die("mmap kvm_run");
    setup_vcpu(&v);

    /* Warm up: the code page's first fault, the MMIO address's first
     * (emulated) access, which later ones take a cached path for. */
    run_loop(&v, MMIO_GPA, 0, 10);

    double t = now_ms();
    unsigned long exits = run_loop(&v, MMIO_GPA, 0, (uint32_t)n_mmio);
    report("mmio_user", exits, now_ms() - t);
    if (exits != n_mmio) {
        errno = 0;
        die("%lu MMIO exits for %lu writes", exits, n_mmio);
    }

    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        die("eventfd");
    struct kvm_ioeventfd io = {.addr = IOEVENT_GPA, .len = 4, .fd = efd};
    if (ioctl(v.vm, KVM_IOEVENTFD, &io) != 0)
        die("KVM_IOEVENTFD");
    run_loop(&v, IOEVENT_GPA, 0, 10);
    t = now_ms();
    run_loop(&v, IOEVENT_GPA, 0, (uint32_t)n_mmio);
    report("mmio_kernel", n_mmio, now_ms() - t);

    t = now_ms();
    run_loop(&v, DATA_GPA, PAGE, (uint32_t)n_pages);
    report("touch_fresh", n_pages, now_ms() - t);

    t = now_ms();
    if (fallocate(pop_fd, 0, 0, (off_t)data_size) != 0)
        die("fallocate %llu bytes", (unsigned long long)data_size);
    report("populate", n_pages, now_ms() - t);

    t = now_ms();
    run_loop(&v, POP_GPA, PAGE, (uint32_t)n_pages);
    report("touch_backed", n_pages, now_ms() - t);

    int spare_fd;
    void *spare = memfd_map("exitcost-spare", 1ull << 30, &spare_fd);
    t = now_ms();
    for (unsigned long i = 0; i < n_slots; i++) {
        set_slot(&v, 3, SPARE_GPA, 1ull << 30, spare);
        set_slot(&v, 3, SPARE_GPA, 0, spare);
    }
    report("slot_update", 2 * n_slots, now_ms() - t);
    return 0;
}
