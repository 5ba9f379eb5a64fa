/* A hostile guest for the virtio-mem host bound (tests/local/test_hostile_guest.py):
 * a freestanding 64-bit "kernel" that drives the first virtio-mem device
 * itself, through the virtio-mmio registers and one split virtqueue, polled.
 *
 * Command line "X<k><r|w>": for slots 0..k-1 it plugs one block in the
 * middle of the slot, writes it and unplugs it (what any driver may do);
 * in slot k it plugs a block, writes it, prints HOSTILE-READY, waits for a
 * byte on the console (the test samples host memory then), and reads (r) or
 * writes (w) every page of the 256 MiB beside the block, which is
 * unplugged. A host that serves those accesses lets it print
 * HOSTILE-SERVED and power off; minivmm must stop it at the first one.
 * Slots are 1 GiB: run it with --virtio-mem m0:4G,block=2M,requested=4G,guard=on (the
 * whole region usable; host memory must still follow what is plugged).
 *
 * Command line "I": interactive, for tests that must look at the host
 * between requests (tests/local/test_hugepages.py). One command per line on
 * the console, offsets in hex from the region's start, one reply line each:
 *   p<off> <n>   plug n blocks      -> "ANSWER <type>" (0 ACK, 1 NACK, 2 BUSY, 3 ERROR)
 *   u<off> <n>   unplug n blocks    -> "ANSWER <type>"
 *   P<off> <n>   plug n blocks and, until the answer, keep touching the
 *                device as a driver's interrupt handler and config reader
 *                would (InterruptStatus, InterruptACK, ConfigGeneration,
 *                Status, plugged_size), timing each round with the TSC
 *                -> 64 lines "ROUND <tsc ticks> <steal ns>", the longest rounds
 *                   with the time the host kept this vCPU off a CPU during
 *                   each (KVM steal time, 0 without it), then
 *                   "ANSWER <type> ROUNDS <n> TOTALTSC <ticks> STEAL <0|1>"
 *                (tests/local/test_device_locks.py)
 *   w<off> <n>   write one word per 4 KiB page of n blocks -> "WROTE"
 *   r<off> <n>   read them back     -> "READ <sum>"
 *   o            power off */
#include <stdint.h>

#define MMIO 0xd0000000UL
#define SLOT (1UL << 30)
#define QSIZE 8
#define PD_BASE 0x300000UL      /* page directories for guest-physical 4..8 GiB */
#define QUEUE_BASE 0x400000UL   /* descriptor table, avail and used rings */
#define REQ_BASE 0x410000UL
#define STEAL_BASE 0x420000UL   /* struct kvm_steal_time, 64-byte aligned */

__asm__(".section .entry, \"ax\"\n"
        ".org 0x200\n"                    /* 64-bit entry: load address + 0x200 */
        ".globl _start\n"
        "_start:\n"
        "  mov $0x280000, %rsp\n"
        "  mov %rsi, %rdi\n"
        "  call hostile_main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".text\n");

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void putc(char c) { outb(0x3f8, (uint8_t)c); }

static void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void puthex(uint64_t v)
{
    puts("0x");
    for (int i = 60; i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 15]);
}

static char getc(void)
{
    while (!(inb(0x3fd) & 1))
        ;
    return (char)inb(0x3f8);
}

static void poweroff(void)
{
    __asm__ volatile("outb %0, %1" : : "a"((uint8_t)0x34), "d"((uint16_t)0x600));
    for (;;)
        __asm__ volatile("hlt");
}

static void fail(const char *why)
{
    puts("HOSTILE-FAIL ");
    puts(why);
    putc('\n');
    poweroff();
}

static volatile uint32_t *reg(unsigned off) { return (volatile uint32_t *)(MMIO + off); }

static uint64_t cfg64(unsigned off)
{
    return *reg(0x100 + off) | (uint64_t)*reg(0x100 + off + 4) << 32;
}

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct req {
    uint16_t type, pad[3];
    uint64_t addr;
    uint16_t nb_blocks, pad2[3];
};

struct resp {
    uint16_t type, pad[3];
    uint16_t state;
};

static struct desc *const descs = (struct desc *)QUEUE_BASE;
static volatile uint16_t *const avail = (uint16_t *)(QUEUE_BASE + 0x1000);
static volatile uint16_t *const used = (uint16_t *)(QUEUE_BASE + 0x2000);
static uint16_t next_avail;

/* Identity-maps guest-physical 4..8 GiB with 2 MiB pages (the loader maps
 * only the first 4 GiB). */
static void map_high(void)
{
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = (uint64_t *)(cr3 & ~0xfffUL);
    uint64_t *pdpt = (uint64_t *)(pml4[0] & ~0xfffUL);
    for (uint64_t g = 4; g < 8; g++) {
        uint64_t *pd = (uint64_t *)(PD_BASE + (g - 4) * 4096);
        for (uint64_t i = 0; i < 512; i++)
            pd[i] = (g << 30) + (i << 21) + 0x83;        /* P | W | PS */
        pdpt[g] = (uint64_t)pd | 3;
    }
    __asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

static void init_device(void)
{
    if (*reg(0x000) != 0x74726976 || *reg(0x004) != 2 || *reg(0x008) != 24)
        fail("no virtio-mem device at 0xd0000000");
    *reg(0x070) = 0;
    *reg(0x070) = 1;                                     /* ACKNOWLEDGE */
    *reg(0x070) = 1 | 2;                                 /* DRIVER */
    *reg(0x024) = 0;
    *reg(0x020) = 1u << 1;                               /* UNPLUGGED_INACCESSIBLE */
    *reg(0x024) = 1;
    *reg(0x020) = 1;                                     /* VERSION_1 */
    *reg(0x070) = 1 | 2 | 8;                             /* FEATURES_OK */
    if (!(*reg(0x070) & 8))
        fail("features refused");
    *reg(0x030) = 0;
    *reg(0x038) = QSIZE;
    *reg(0x080) = (uint32_t)QUEUE_BASE;
    *reg(0x084) = 0;
    *reg(0x090) = (uint32_t)(QUEUE_BASE + 0x1000);
    *reg(0x094) = 0;
    *reg(0x0a0) = (uint32_t)(QUEUE_BASE + 0x2000);
    *reg(0x0a4) = 0;
    *reg(0x044) = 1;
    *reg(0x070) = 1 | 2 | 8 | 4;                         /* DRIVER_OK */
}

/* Puts one request on the ring and notifies; returns the used index that
 * answers it. */
static uint16_t submit(uint16_t type, uint64_t addr, uint16_t nb_blocks)
{
    volatile struct req *rq = (struct req *)REQ_BASE;
    volatile struct resp *rs = (struct resp *)(REQ_BASE + 64);
    rq->type = type;
    rq->addr = addr;
    rq->nb_blocks = nb_blocks;
    rs->type = 0xffff;
    descs[0] = (struct desc){.addr = REQ_BASE, .len = sizeof(struct req), .flags = 1, .next = 1};
    descs[1] = (struct desc){.addr = REQ_BASE + 64, .len = sizeof(struct resp), .flags = 2};
    uint16_t want = (uint16_t)(used[1] + 1);
    avail[2 + next_avail % QSIZE] = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    avail[1] = ++next_avail;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *reg(0x050) = 0;
    return want;
}

/* One request, answered synchronously (the device thread serves it). */
static uint16_t request(uint16_t type, uint64_t addr, uint16_t nb_blocks)
{
    uint16_t want = submit(type, addr, nb_blocks);
    while (used[1] != want)
        __asm__ volatile("pause");
    *reg(0x064) = *reg(0x060);                           /* ACK the interrupt */
    return ((volatile struct resp *)(REQ_BASE + 64))->type;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

static void putdec(uint64_t v);

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

/* KVM's steal time (MSR_KVM_STEAL_TIME): how long the host kept this vCPU
 * runnable but off a CPU, in ns. A round that waits for a lock in the VMM
 * sleeps, which is not steal; a round the host merely preempted is. So
 * subtracting it keeps the other load on a shared test host out of the
 * measurement, and nothing else. */
static volatile uint64_t *const steal_time = (uint64_t *)STEAL_BASE;

static int steal_time_on(void)
{
    uint32_t a, b, c, d;
    cpuid(0x40000000, &a, &b, &c, &d);
    if (b != 0x4b4d564b || a < 0x40000001)             /* "KVMKVMKVM" */
        return 0;
    cpuid(0x40000001, &a, &b, &c, &d);
    if (!(a & (1u << 5)))                                /* KVM_FEATURE_STEAL_TIME */
        return 0;
    uint64_t v = STEAL_BASE | 1;
    __asm__ volatile("wrmsr" : : "c"(0x4b564d03), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
    return 1;
}

static uint64_t steal_ns(void)
{
    volatile uint32_t *version = (volatile uint32_t *)(STEAL_BASE + 12);
    for (;;) {
        uint32_t v = *version;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        uint64_t s = *steal_time;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (!(v & 1) && *version == v)
            return s;
    }
}

/* A plug the host serves while this vCPU keeps using the device: each
 * round is what Linux's vm_interrupt and a config read do. The longest
 * round is how long a vCPU can be stuck behind the device thread's work. */
#define KEEP 64

/* A plug the host serves while this vCPU keeps using the device: each
 * round is what Linux's vm_interrupt and a config read do. The KEEP
 * longest rounds are reported with the steal time during each; every other
 * round was no longer than the shortest of them. */
static void timed_plug(uint64_t addr, uint16_t nb_blocks)
{
    int steal = steal_time_on();
    uint64_t round[KEEP] = {0}, stolen[KEEP] = {0};
    unsigned shortest = 0;                               /* index of the smallest kept */
    uint16_t want = submit(0, addr, nb_blocks);
    uint64_t rounds = 0, start = rdtsc(), sink = 0;
    while (used[1] != want) {
        uint64_t s0 = steal ? steal_ns() : 0;
        uint64_t t0 = rdtsc();
        uint32_t isr = *reg(0x060);                      /* InterruptStatus */
        *reg(0x064) = isr;                               /* InterruptACK */
        sink += *reg(0x0fc);                             /* ConfigGeneration */
        sink += *reg(0x070);                             /* Status */
        sink += *reg(0x100 + 0x28);                      /* plugged_size, low half */
        uint64_t dt = rdtsc() - t0;
        if (dt > round[shortest]) {
            round[shortest] = dt;
            stolen[shortest] = steal ? steal_ns() - s0 : 0;
            for (unsigned k = 0; k < KEEP; k++)
                if (round[k] < round[shortest])
                    shortest = k;
        }
        rounds++;
    }
    uint64_t total = rdtsc() - start;
    (void)sink;
    *reg(0x064) = *reg(0x060);
    for (unsigned k = 0; k < KEEP; k++) {
        puts("ROUND ");
        putdec(round[k]);
        putc(' ');
        putdec(stolen[k]);
        putc('\n');
    }
    puts("ANSWER ");
    putdec(((volatile struct resp *)(REQ_BASE + 64))->type);
    puts(" ROUNDS ");
    putdec(rounds);
    puts(" TOTALTSC ");
    putdec(total);
    puts(" STEAL ");
    putdec((uint64_t)steal);
    putc('\n');
}

static void plug(uint64_t addr, uint64_t block, int plug_it)
{
    uint16_t answer = request(plug_it ? 0 : 1, addr, 1);
    if (answer != 0) {
        puts(plug_it ? "plug " : "unplug ");
        puthex(addr);
        puts(" answered ");
        puthex(answer);
        fail("request refused");
    }
    if (plug_it)
        for (uint64_t off = 0; off < block; off += 4096)
            *(volatile uint64_t *)(addr + off) = addr + off;
}

static void putdec(uint64_t v)
{
    char buf[24];
    int n = 0;
    do
        buf[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n)
        putc(buf[--n]);
}

static uint64_t gethex(const char **p)
{
    uint64_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uint64_t)(c - 'a' + 10);
        else
            return v;
    }
}

static void interactive(uint64_t base, uint64_t block)
{
    char line[64];
    for (;;) {
        unsigned n = 0;
        for (char c; (c = getc()) != '\n';)
            if (c != '\r' && n < sizeof(line) - 1)
                line[n++] = c;
        line[n] = 0;
        const char *p = line + 1;
        uint64_t off = gethex(&p);
        if (*p == ' ')
            p++;
        uint64_t count = gethex(&p);
        uint64_t at = base + off, sum = 0;
        switch (line[0]) {
        case 'p':
        case 'u':
            puts("ANSWER ");
            putdec(request(line[0] == 'p' ? 0 : 1, at, (uint16_t)count));
            putc('\n');
            break;
        case 'P':
            timed_plug(at, (uint16_t)count);
            break;
        case 'w':
        case 'r':
            for (uint64_t o = 0; o < count * block; o += 4096) {
                volatile uint64_t *w = (volatile uint64_t *)(at + o);
                if (line[0] == 'w')
                    *w = at + o;
                else
                    sum += *w;
            }
            puts(line[0] == 'w' ? "WROTE\n" : "READ ");
            if (line[0] == 'r') {
                puthex(sum);
                putc('\n');
            }
            break;
        case 'o':
            poweroff();
            break;
        case 0:
            break;
        default:
            puts("HOSTILE-BAD-COMMAND\n");
        }
    }
}

void hostile_main(const uint8_t *boot_params)
{
    const char *cmdline = (const char *)(uintptr_t)*(const uint32_t *)(boot_params + 0x228);
    int interactive_mode = cmdline[0] == 'I';
    if (!interactive_mode && (cmdline[0] != 'X' || cmdline[1] < '0' || cmdline[1] > '3'))
        fail("usage: X<slot 0-3><r|w> or I");
    unsigned k = (unsigned)(cmdline[1] - '0');
    int write = cmdline[2] == 'w';
    map_high();
    init_device();
    uint64_t base = cfg64(0x10), block = cfg64(0x00);
    puts("HOSTILE region ");
    puthex(base);
    puts(" block ");
    puthex(block);
    putc('\n');
    if (interactive_mode) {
        puts("HOSTILE-INTERACTIVE\n");
        interactive(base, block);
    }
    for (unsigned s = 0; s < k; s++) {
        uint64_t at = base + s * SLOT + SLOT / 2;
        plug(at, block, 1);
        plug(at, block, 0);
        puts("HOSTILE-CYCLE ");
        putc((char)('0' + s));
        putc('\n');
    }
    uint64_t at = base + k * SLOT + SLOT / 2;
    plug(at, block, 1);
    puts("HOSTILE-READY\n");
    getc();
    uint64_t sum = 0;
    for (uint64_t off = block; off < block + (256UL << 20); off += 4096) {
        volatile uint64_t *p = (volatile uint64_t *)(at + off);
        if (write)
            *p = off;
        else
            sum += *p;
    }
    puts("HOSTILE-SERVED ");
    puthex(sum);
    putc('\n');
    poweroff();
}
