/* No long work under device locks (issue 10, item 5): while the device
 * thread is inside a plug's backing work, a vCPU's register and config
 * accesses and the API's reads are answered, and a reset cuts the work
 * short. Nor between a request and its answer: the event for API clients
 * is published after the answer (issue 12). The backing here blocks until the test lets it go, so "while the
 * plug runs" is a state the test waits for, not a race it hopes to win;
 * timeouts only turn a hang (the old locking) into a failure. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_mem.h"
#include "devices/virtio_mmio.h"
#include "unit.h"
#include "vmm/clock.h"
#include "vmm/guest_mem.h"
#include "vmm/io_bus.h"
#include "vmm/log.h"

#define BASE 0xd0000000ULL
#define RAM_SIZE (1u << 20)
#define REGION_GPA (1ULL << 32)
#define REGION_SIZE (4ULL << 30)
#define BLOCK (2ULL << 20)
#define QSIZE 8
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define REQ 0x4000
#define RESP 0x5000
#define HANG_S 5        /* what counts as "never answered" */

/* A backing whose plug blocks until released or cancelled. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered, open, saw_cancel;
};

struct fx {
    struct guest_mem gm;
    struct gate g;
    struct virtio_mem dev;
    struct virtio_mmio t;
    struct io_bus bus;
    pthread_t device;
};

static int gated_plug(void *b, uint64_t offset, uint64_t len, const _Atomic uint32_t *cancel)
{
    (void)offset;
    (void)len;
    struct gate *g = b;
    pthread_mutex_lock(&g->lock);
    g->entered = true;
    pthread_cond_broadcast(&g->cond);
    /* As populate does between chunks: look at cancel every millisecond
     * (nobody signals it; the transport only raises the flag). */
    while (!g->open && !(cancel && atomic_load_explicit(cancel, memory_order_relaxed))) {
        struct timespec ts = clock_deadline(CLOCK_REALTIME, 1);
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
    }
    g->saw_cancel = !g->open;
    pthread_mutex_unlock(&g->lock);
    return g->saw_cancel ? -ECANCELED : 0;
}

static int plain_unplug(void *b, uint64_t offset, uint64_t len, bool more_to_come)
{
    (void)b;
    (void)offset;
    (void)len;
    (void)more_to_come;
    return 0;
}

static const struct virtio_mem_backing_ops gated_ops = {gated_plug, plain_unplug};

static uint32_t rd(struct fx *f, uint64_t off)
{
    uint32_t v = 0;
    CHECK(io_bus_read(&f->bus, BASE + off, (uint8_t *)&v, 4));
    return v;
}

static void wr(struct fx *f, uint64_t off, uint32_t v)
{
    CHECK(io_bus_write(&f->bus, BASE + off, (const uint8_t *)&v, 4));
}

static void setup(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->g.lock, NULL);
    pthread_cond_init(&f->g.cond, NULL);
    struct mem_range r = {0, RAM_SIZE};
    guest_mem_init(&f->gm, -1);
    CHECK_EQ(guest_mem_add_ram(&f->gm, &r, 1, 0), 0);
    struct virtio_mem_params p = {.id = "locks", .addr = REGION_GPA, .region_size = REGION_SIZE,
                                  .block_size = BLOCK, .memory_block = 128ULL << 20,
                                  .requested_size = 2ULL << 30};
    char err[200];
    CHECK_EQ(virtio_mem_init(&f->dev, &p, &gated_ops, &f->g, err, sizeof(err)), 0);
    CHECK_EQ(virtio_mmio_init(&f->t, &virtio_mem_ops, &f->dev, &f->gm, -1, BASE, 5, "locks"), 0);
    io_bus_init(&f->bus, "mmio");
    CHECK_EQ(io_bus_register(&f->bus, BASE, VIRTIO_MMIO_SIZE, &virtio_mmio_io, &f->t, "locks"),
             0);

    uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    wr(f, VIRTIO_MMIO_STATUS, st);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    wr(f, VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_FEATURES_OK);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(f, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL);
    wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, USED);
    wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
    wr(f, VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    CHECK(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);
}

static void *device_thread(void *arg)
{
    struct fx *f = arg;
    virtio_mmio_process_queues(&f->t);
    return NULL;
}

/* Puts a PLUG of 1 GiB on the ring, starts serving it on a thread standing
 * in for the device thread, and waits until the plug is inside its backing
 * work. */
static bool start_plug(struct fx *f)
{
    struct virtio_mem_req req = {.type = VIRTIO_MEM_REQ_PLUG, .addr = REGION_GPA,
                                 .nb_blocks = (1u << 30) / BLOCK};
    struct virtio_mem_resp resp = {.type = 0xffff};
    struct virtq_desc d[2] = {
        {.addr = REQ, .len = sizeof(req), .flags = VIRTQ_DESC_F_NEXT, .next = 1},
        {.addr = RESP, .len = sizeof(resp), .flags = VIRTQ_DESC_F_WRITE},
    };
    uint16_t head = 0, idx = 1;
    CHECK_EQ(guest_mem_write(&f->gm, REQ, &req, sizeof(req)), 0);
    CHECK_EQ(guest_mem_write(&f->gm, RESP, &resp, sizeof(resp)), 0);
    CHECK_EQ(guest_mem_write(&f->gm, DESC, d, sizeof(d)), 0);
    CHECK_EQ(guest_mem_write(&f->gm, AVAIL + 4, &head, 2), 0);
    CHECK_EQ(guest_mem_write(&f->gm, AVAIL + 2, &idx, 2), 0);
    wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    CHECK_EQ(pthread_create(&f->device, NULL, device_thread, f), 0);

    pthread_mutex_lock(&f->g.lock);
    struct timespec ts = clock_deadline(CLOCK_REALTIME, HANG_S * 1000);
    while (!f->g.entered && pthread_cond_timedwait(&f->g.cond, &f->g.lock, &ts) == 0)
        ;
    bool entered = f->g.entered;
    pthread_mutex_unlock(&f->g.lock);
    CHECK(entered);
    return entered;
}

static void open_gate(struct fx *f)
{
    pthread_mutex_lock(&f->g.lock);
    f->g.open = true;
    pthread_cond_broadcast(&f->g.cond);
    pthread_mutex_unlock(&f->g.lock);
}

static uint16_t answer(struct fx *f)
{
    struct virtio_mem_resp resp;
    CHECK_EQ(guest_mem_read(&f->gm, RESP, &resp, sizeof(resp)), 0);
    return resp.type;
}

static void teardown(struct fx *f)
{
    virtio_mmio_destroy(&f->t);
    virtio_mem_destroy(&f->dev);
    guest_mem_destroy(&f->gm);
}

/* Work done from another thread, with a bound on how long it may take. */
struct side {
    struct fx *f;
    void (*fn)(struct side *);
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    uint32_t isr, generation, status;
    uint64_t plugged, api_plugged, usable_after_resize;
    int resize_rc;
};

static void *side_main(void *arg)
{
    struct side *s = arg;
    s->fn(s);
    pthread_mutex_lock(&s->lock);
    s->done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Starts fn on a thread; returns whether it finished within HANG_S. The
 * thread is joined by side_join, whatever happened. */
static bool side_run(struct side *s, pthread_t *th)
{
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    CHECK_EQ(pthread_create(th, NULL, side_main, s), 0);
    pthread_mutex_lock(&s->lock);
    struct timespec ts = clock_deadline(CLOCK_REALTIME, HANG_S * 1000);
    while (!s->done && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
        ;
    bool done = s->done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

/* What a vCPU's interrupt handler and config read, and the API, do. */
static void read_everything(struct side *s)
{
    struct fx *f = s->f;
    s->isr = rd(f, VIRTIO_MMIO_INTERRUPT_STATUS);
    wr(f, VIRTIO_MMIO_INTERRUPT_ACK, s->isr);
    s->generation = rd(f, VIRTIO_MMIO_CONFIG_GENERATION);
    s->status = rd(f, VIRTIO_MMIO_STATUS);
    s->plugged = rd(f, VIRTIO_MMIO_CONFIG + 0x28) |
                 (uint64_t)rd(f, VIRTIO_MMIO_CONFIG + 0x2c) << 32;
    struct virtio_mem_config c;
    virtio_mem_get_config(&f->dev, &c);
    s->api_plugged = c.plugged_size;
    /* Lowering requested_size while nothing is plugged would shrink the
     * usable region, but not under a plug in flight. */
    char err[200];
    s->resize_rc = virtio_mem_set_requested_size(&f->dev, 0, err, sizeof(err));
    virtio_mem_get_config(&f->dev, &c);
    s->usable_after_resize = c.usable_region_size;
}

TEST(registers_config_and_api_answer_during_a_plug)
{
    static struct fx f;
    setup(&f);
    uint64_t usable = f.dev.cfg.usable_region_size;
    if (!start_plug(&f)) {
        open_gate(&f);
        pthread_join(f.device, NULL);
        teardown(&f);
        return;
    }
    struct side s = {.f = &f, .fn = read_everything};
    pthread_t th;
    bool answered = side_run(&s, &th);
    CHECK(answered);                    /* the old locking: blocked until the plug ended */
    open_gate(&f);
    pthread_join(th, NULL);
    pthread_join(f.device, NULL);

    CHECK(s.status & VIRTIO_STATUS_DRIVER_OK);
    CHECK_EQ(s.plugged, 0);             /* in flight: not plugged yet */
    CHECK_EQ(s.api_plugged, 0);
    CHECK_EQ(s.resize_rc, 0);
    CHECK_EQ(s.usable_after_resize, usable);
    CHECK_EQ(answer(&f), VIRTIO_MEM_RESP_ACK);
    struct virtio_mem_config c;
    virtio_mem_get_config(&f.dev, &c);
    CHECK_EQ(c.plugged_size, 1ULL << 30);
    CHECK_EQ(c.usable_region_size, usable);  /* the plug landed inside it */
    CHECK(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_USED_BUFFER);
    teardown(&f);
}

static void reset_device(struct side *s)
{
    wr(s->f, VIRTIO_MMIO_STATUS, 0);
    s->status = rd(s->f, VIRTIO_MMIO_STATUS);
}

TEST(reset_cuts_a_plug_short)
{
    static struct fx f;
    setup(&f);
    if (!start_plug(&f)) {
        open_gate(&f);
        pthread_join(f.device, NULL);
        teardown(&f);
        return;
    }
    /* The gate stays shut: only the reset's cancel can end the plug. */
    struct side s = {.f = &f, .fn = reset_device};
    pthread_t th;
    bool done = side_run(&s, &th);
    CHECK(done);
    open_gate(&f);
    pthread_join(th, NULL);
    pthread_join(f.device, NULL);

    CHECK(f.g.saw_cancel);
    CHECK_EQ(s.status, 0);
    /* Answered before the reset completed, as BUSY: the driver retries. */
    CHECK_EQ(answer(&f), VIRTIO_MEM_RESP_BUSY);
    struct virtio_mem_config c;
    virtio_mem_get_config(&f.dev, &c);
    CHECK_EQ(c.plugged_size, 0);
    CHECK_EQ(atomic_load_explicit(&f.t.cancel, memory_order_relaxed), 0);
    teardown(&f);
}

/* An observer (the API's event stream) that blocks on its first
 * plugged-size event until the test lets it go. */
struct slow_observer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered, open;
};

static void slow_observe(void *opaque, struct virtio_mem *m, enum virtio_mem_event what)
{
    (void)m;
    struct slow_observer *o = opaque;
    if (what != VIRTIO_MEM_EVENT_PLUGGED)
        return;
    pthread_mutex_lock(&o->lock);
    o->entered = true;
    pthread_cond_broadcast(&o->cond);
    struct timespec ts = clock_deadline(CLOCK_REALTIME, HANG_S * 1000);
    while (!o->open && pthread_cond_timedwait(&o->cond, &o->lock, &ts) == 0)
        ;
    pthread_mutex_unlock(&o->lock);
}

/* The driver waits for its answer, not for the VMM telling API clients
 * about it: by the time the plugged-size event is being published, the
 * answer is in the used ring and its interrupt is raised. (It used to be
 * published inside the request, before the answer: 20-70 us of every plug
 * request in the nested test host.) */
TEST(the_answer_and_its_interrupt_do_not_wait_for_the_event)
{
    static struct fx f;
    setup(&f);
    static struct slow_observer o = {.lock = PTHREAD_MUTEX_INITIALIZER,
                                     .cond = PTHREAD_COND_INITIALIZER};
    f.dev.observer = slow_observe;
    f.dev.observer_opaque = &o;
    open_gate(&f);                      /* the backing plugs at once */
    if (!start_plug(&f)) {
        pthread_join(f.device, NULL);
        teardown(&f);
        return;
    }
    pthread_mutex_lock(&o.lock);
    struct timespec ts = clock_deadline(CLOCK_REALTIME, HANG_S * 1000);
    while (!o.entered && pthread_cond_timedwait(&o.cond, &o.lock, &ts) == 0)
        ;
    bool entered = o.entered;
    pthread_mutex_unlock(&o.lock);
    CHECK(entered);

    /* Read while the event is still being published. */
    uint16_t type = answer(&f);
    uint16_t used_idx = 0;
    CHECK_EQ(guest_mem_read(&f.gm, USED + 2, &used_idx, 2), 0);
    uint32_t isr = rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS);
    uint64_t raised = 0;
    bool irq = read(f.t.irq.eventfd, &raised, sizeof(raised)) == sizeof(raised);

    pthread_mutex_lock(&o.lock);
    o.open = true;
    pthread_cond_broadcast(&o.cond);
    pthread_mutex_unlock(&o.lock);
    pthread_join(f.device, NULL);

    CHECK_EQ(type, VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(used_idx, 1);
    CHECK(isr & VIRTIO_INT_USED_BUFFER);
    CHECK(irq);
    CHECK_EQ(raised, 1);
    teardown(&f);
}

/* --verbose logs each request's timing to stderr, which may be a slow
 * console or a full pipe: the line is written after the answer and its
 * interrupt are out, so a stuck stderr never holds the driver up. */
TEST(a_verbose_line_to_a_stuck_stderr_does_not_delay_the_answer)
{
    static struct fx f;
    setup(&f);
    open_gate(&f);
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    /* Fill the pipe, then make writes to it block again. */
    int fl = fcntl(p[1], F_GETFL);
    CHECK_EQ(fcntl(p[1], F_SETFL, fl | O_NONBLOCK), 0);
    char junk[4096];
    memset(junk, 'x', sizeof(junk));
    while (write(p[1], junk, sizeof(junk)) > 0)
        ;
    while (write(p[1], junk, 1) > 0)
        ;
    CHECK_EQ(fcntl(p[1], F_SETFL, fl), 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK_EQ(dup2(p[1], 2), 2);
    log_set_verbose(1);

    bool started = start_plug(&f);
    /* Read as the driver does (acquire, pairing with the device's release
     * of used->idx), so a race detector sees the answer ordered before it:
     * its report would go to the stuck stderr. */
    const uint16_t *used = guest_mem_ptr(&f.gm, USED + 2, 2);
    uint16_t used_idx = 0;
    for (int ms = 0; started && used_idx != 1 && ms < HANG_S * 1000; ms++) {
        used_idx = __atomic_load_n(used, __ATOMIC_ACQUIRE);
        if (used_idx != 1)
            usleep(1000);
    }
    /* The interrupt follows the used entry: wait for it too. */
    uint64_t raised = 0;
    bool irq = false;
    for (int ms = 0; started && !irq && ms < HANG_S * 1000; ms++) {
        irq = read(f.t.irq.eventfd, &raised, sizeof(raised)) == sizeof(raised);
        if (!irq)
            usleep(1000);
    }

    /* Let the line through, and the device thread end. */
    log_set_verbose(0);
    CHECK_EQ(dup2(saved, 2), 2);
    close(saved);
    CHECK_EQ(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    for (;;) {
        while (read(p[0], junk, sizeof(junk)) > 0)
            ;
        struct timespec ts = clock_deadline(CLOCK_REALTIME, 10);
        if (pthread_timedjoin_np(f.device, NULL, &ts) == 0)
            break;
    }
    close(p[0]);
    close(p[1]);

    CHECK(started);
    CHECK_EQ(used_idx, 1);
    CHECK_EQ(answer(&f), VIRTIO_MEM_RESP_ACK);
    CHECK(irq);
    teardown(&f);
}
