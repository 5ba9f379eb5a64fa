/* The virtio-mmio register file and device config window as the guest sees
 * them. Every value here comes from the guest: each index it chooses is
 * checked in one helper, each register's direction in one table, each status
 * change in one transition table. */
#include <inttypes.h>
#include <string.h>

#include "devices/virtio_mmio.h"
#include "devices/virtio_mmio_internal.h"
#include "vmm/log.h"

#define STATUS_PROGRESS                                                                 \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |    \
     VIRTIO_STATUS_DRIVER_OK)

enum { REG_R = 1, REG_W = 2, REG_RW = 3 };

/* How an access to a register is served (see "Lock hierarchy" in
 * docs/architecture.md):
 *   REG_FREE  no lock: constants and the atomics (InterruptStatus,
 *             InterruptACK, ConfigGeneration, QueueNotify), so a vCPU's
 *             interrupt handler never waits for anybody;
 *   REG_LOCK  t->lock, held only for the register's own state;
 *   REG_SERVE t->serve_lock, then t->lock: writes that must not overlap the
 *             device thread serving a queue (reset, QueueReady). They ask it
 *             to cut its work short (t->cancel) so the wait is short. */
enum { REG_LOCK = 0, REG_FREE = 1, REG_SERVE = 2 };

struct reg_info {
    uint16_t offset;
    uint8_t access;             /* 0: no register at this offset */
    uint8_t read_lock, write_lock;
    const char *name;
};

#define REG(off, acc, rl, wl, nm) [(off) / 4] = {(off), (acc), (rl), (wl), (nm)}

/* Indexed by offset / 4: the dispatch is one bounds check and one load. */
static const struct reg_info regs[VIRTIO_MMIO_CONFIG / 4] = {
    REG(VIRTIO_MMIO_MAGIC_VALUE, REG_R, REG_FREE, REG_FREE, "MagicValue"),
    REG(VIRTIO_MMIO_VERSION, REG_R, REG_FREE, REG_FREE, "Version"),
    REG(VIRTIO_MMIO_DEVICE_ID, REG_R, REG_FREE, REG_FREE, "DeviceID"),
    REG(VIRTIO_MMIO_VENDOR_ID, REG_R, REG_FREE, REG_FREE, "VendorID"),
    REG(VIRTIO_MMIO_DEVICE_FEATURES, REG_R, REG_LOCK, REG_LOCK, "DeviceFeatures"),
    REG(VIRTIO_MMIO_DEVICE_FEATURES_SEL, REG_W, REG_LOCK, REG_LOCK, "DeviceFeaturesSel"),
    REG(VIRTIO_MMIO_DRIVER_FEATURES, REG_W, REG_LOCK, REG_LOCK, "DriverFeatures"),
    REG(VIRTIO_MMIO_DRIVER_FEATURES_SEL, REG_W, REG_LOCK, REG_LOCK, "DriverFeaturesSel"),
    REG(VIRTIO_MMIO_QUEUE_SEL, REG_W, REG_LOCK, REG_LOCK, "QueueSel"),
    REG(VIRTIO_MMIO_QUEUE_NUM_MAX, REG_R, REG_LOCK, REG_LOCK, "QueueNumMax"),
    REG(VIRTIO_MMIO_QUEUE_NUM, REG_W, REG_LOCK, REG_LOCK, "QueueNum"),
    REG(VIRTIO_MMIO_QUEUE_READY, REG_RW, REG_LOCK, REG_SERVE, "QueueReady"),
    REG(VIRTIO_MMIO_QUEUE_NOTIFY, REG_W, REG_FREE, REG_FREE, "QueueNotify"),
    REG(VIRTIO_MMIO_INTERRUPT_STATUS, REG_R, REG_FREE, REG_FREE, "InterruptStatus"),
    REG(VIRTIO_MMIO_INTERRUPT_ACK, REG_W, REG_FREE, REG_FREE, "InterruptACK"),
    REG(VIRTIO_MMIO_STATUS, REG_RW, REG_LOCK, REG_SERVE, "Status"),
    REG(VIRTIO_MMIO_QUEUE_DESC_LOW, REG_W, REG_LOCK, REG_LOCK, "QueueDescLow"),
    REG(VIRTIO_MMIO_QUEUE_DESC_HIGH, REG_W, REG_LOCK, REG_LOCK, "QueueDescHigh"),
    REG(VIRTIO_MMIO_QUEUE_AVAIL_LOW, REG_W, REG_LOCK, REG_LOCK, "QueueAvailLow"),
    REG(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, REG_W, REG_LOCK, REG_LOCK, "QueueAvailHigh"),
    REG(VIRTIO_MMIO_QUEUE_USED_LOW, REG_W, REG_LOCK, REG_LOCK, "QueueUsedLow"),
    REG(VIRTIO_MMIO_QUEUE_USED_HIGH, REG_W, REG_LOCK, REG_LOCK, "QueueUsedHigh"),
    REG(VIRTIO_MMIO_SHM_SEL, REG_W, REG_FREE, REG_FREE, "SHMSel"),
    REG(VIRTIO_MMIO_SHM_LEN_LOW, REG_R, REG_FREE, REG_FREE, "SHMLenLow"),
    REG(VIRTIO_MMIO_SHM_LEN_HIGH, REG_R, REG_FREE, REG_FREE, "SHMLenHigh"),
    REG(VIRTIO_MMIO_SHM_BASE_LOW, REG_R, REG_FREE, REG_FREE, "SHMBaseLow"),
    REG(VIRTIO_MMIO_SHM_BASE_HIGH, REG_R, REG_FREE, REG_FREE, "SHMBaseHigh"),
    REG(VIRTIO_MMIO_QUEUE_RESET, REG_RW, REG_FREE, REG_FREE, "QueueReset"),
    REG(VIRTIO_MMIO_CONFIG_GENERATION, REG_R, REG_FREE, REG_FREE, "ConfigGeneration"),
};

static const struct reg_info *reg_lookup(uint64_t offset)
{
    if (offset >= VIRTIO_MMIO_CONFIG || (offset & 3))
        return NULL;
    const struct reg_info *r = &regs[offset / 4];
    return r->access ? r : NULL;
}

/* The one check of QueueSel: NULL when the driver selected no queue we have. */
static struct virtq *selected_queue(struct virtio_mmio *t, const char *reg)
{
    if (t->queue_sel < t->ops->num_queues)
        return &t->queues[t->queue_sel];
    if (reg)
        log_warn_ratelimited(&t->reg_rl, "%s: %s with QueueSel %u (device has %u queues)",
                             t->name, reg, t->queue_sel, t->ops->num_queues);
    return NULL;
}

/* virtio 1.2, 3.1.1: queues are set up after FEATURES_OK and before
 * DRIVER_OK, and a ready queue's fields are frozen. */
static bool queue_setup_allowed(struct virtio_mmio *t, const struct virtq *q, const char *reg)
{
    uint32_t s = vmmio_status(t);
    const char *why = NULL;
    if (t->broken)
        why = "device needs reset";
    else if (!(s & VIRTIO_STATUS_FEATURES_OK) || (s & VIRTIO_STATUS_DRIVER_OK))
        why = "only allowed between FEATURES_OK and DRIVER_OK";
    else if (q->ready)
        why = "queue is ready";
    if (why)
        log_warn_ratelimited(&t->reg_rl, "%s: %s write to queue %u ignored: %s", t->name, reg,
                             t->queue_sel, why);
    return !why;
}

static uint64_t offered_features(const struct virtio_mmio *t)
{
    uint64_t dev = t->ops->get_features ? t->ops->get_features(t->dev) : t->ops->features;
    return dev | (1ULL << VIRTIO_F_VERSION_1);
}

/* The single reading of a guest-chosen config offset and width. */
static bool config_access_ok(const struct virtio_mmio *t, uint64_t offset, unsigned len,
                             uint32_t *config_offset)
{
    if (len != 1 && len != 2 && len != 4 && len != 8)
        return false;
    if (offset < VIRTIO_MMIO_CONFIG)
        return false;
    uint64_t off = offset - VIRTIO_MMIO_CONFIG;
    uint32_t size = t->ops->config_size;
    if (off > size || len > size - off)
        return false;
    *config_offset = (uint32_t)off;
    return true;
}

/* Status changes the driver may make. Writing 0 (reset) is handled apart;
 * FAILED may be added any time; otherwise exactly one bit is added, in this
 * order. */
static const struct {
    uint32_t from;
    uint32_t add;
} status_steps[] = {
    {0, VIRTIO_STATUS_ACKNOWLEDGE},
    {VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_STATUS_DRIVER},
    {VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, VIRTIO_STATUS_FEATURES_OK},
    {VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK,
     VIRTIO_STATUS_DRIVER_OK},
};

static const char *status_change_refused(const struct virtio_mmio *t, uint32_t old,
                                         uint32_t val)
{
    if (val & ~(STATUS_PROGRESS | VIRTIO_STATUS_FAILED))
        return "unknown status bits";
    if (old & ~val)
        return "status bits are only cleared by writing 0";
    uint32_t add = val & ~old & STATUS_PROGRESS;
    if (!add)
        return NULL;
    if (t->broken)
        return "device needs reset";
    if (old & VIRTIO_STATUS_FAILED)
        return "driver has set FAILED";
    for (size_t i = 0; i < sizeof(status_steps) / sizeof(status_steps[0]); i++)
        if (status_steps[i].from == (old & STATUS_PROGRESS) && status_steps[i].add == add)
            return NULL;
    return "out of order";
}

static const char *features_refused(struct virtio_mmio *t)
{
    uint64_t f = t->driver_features;
    if (!(f & (1ULL << VIRTIO_F_VERSION_1)))
        return "driver did not accept VIRTIO_F_VERSION_1";
    if (f & ~offered_features(t))
        return "driver accepted features the device did not offer";
    if (t->ops->validate_features && !t->ops->validate_features(t->dev, f))
        return "device model refused the feature set";
    return NULL;
}

static void write_status(struct virtio_mmio *t, uint32_t val)
{
    /* NEEDS_RESET is the device's bit; a driver writing back what it read
     * must not be refused for it. */
    val &= ~VIRTIO_STATUS_NEEDS_RESET;
    if (val == 0) {
        vmmio_reset_locked(t);
        return;
    }
    uint32_t old = vmmio_status(t);
    const char *why = status_change_refused(t, old, val);
    if (why) {
        log_warn_ratelimited(&t->reg_rl, "%s: status 0x%x -> 0x%x refused: %s", t->name, old,
                             val, why);
        return;
    }
    uint32_t added = val & ~old;
    if (added & VIRTIO_STATUS_FEATURES_OK) {
        why = features_refused(t);
        if (why) {
            log_warn_ratelimited(&t->reg_rl, "%s: FEATURES_OK refused (features 0x%" PRIx64
                                 "): %s", t->name, t->driver_features, why);
            val &= ~VIRTIO_STATUS_FEATURES_OK;
            added &= ~VIRTIO_STATUS_FEATURES_OK;
        }
    }
    vmmio_set_status(t, val);
    if (added & VIRTIO_STATUS_DRIVER_OK && t->ops->activate)
        t->ops->activate(t->dev, &t->link);
}

static void write_queue_ready(struct virtio_mmio *t, uint32_t val)
{
    struct virtq *q = selected_queue(t, "QueueReady");
    if (!q)
        return;
    if (val == 0) {
        /* Always allowed: Linux deactivates queues this way on removal. */
        q->ready = false;
        return;
    }
    if (val != 1) {
        log_warn_ratelimited(&t->reg_rl, "%s: QueueReady value %u ignored", t->name, val);
        return;
    }
    if (!queue_setup_allowed(t, q, "QueueReady"))
        return;
    char err[160];
    if (virtq_enable(q, t->mem, err, sizeof(err)) < 0)
        vmmio_mark_broken_locked(t, "queue %u: %s", t->queue_sel, err);
}

/* Writes the low or high half of a queue's 64-bit ring address. */
static void write_queue_addr(struct virtio_mmio *t, const struct reg_info *r, uint32_t val)
{
    struct virtq *q = selected_queue(t, r->name);
    if (!q || !queue_setup_allowed(t, q, r->name))
        return;
    uint64_t *gpa;
    switch (r->offset & ~7u) {
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
        gpa = &q->desc_gpa;
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
        gpa = &q->avail_gpa;
        break;
    default:
        gpa = &q->used_gpa;
        break;
    }
    if (r->offset & 4)
        *gpa = (*gpa & 0xffffffffULL) | ((uint64_t)val << 32);
    else
        *gpa = (*gpa & ~0xffffffffULL) | val;
}

static void write_queue_num(struct virtio_mmio *t, uint32_t val)
{
    struct virtq *q = selected_queue(t, "QueueNum");
    if (!q || !queue_setup_allowed(t, q, "QueueNum"))
        return;
    /* Out of range becomes 0, which QueueReady then refuses with a reason,
     * rather than a truncated size that happens to be valid. */
    q->size = val <= UINT16_MAX ? (uint16_t)val : 0;
}

static void write_driver_features(struct virtio_mmio *t, uint32_t val)
{
    uint32_t s = vmmio_status(t);
    if (!(s & VIRTIO_STATUS_DRIVER) || (s & VIRTIO_STATUS_FEATURES_OK) || t->broken) {
        log_warn_ratelimited(&t->reg_rl, "%s: DriverFeatures outside negotiation ignored",
                             t->name);
        return;
    }
    if (t->driver_features_sel > 1) {
        /* Nothing is offered there, so accepting anything is refused. */
        if (val)
            log_warn_ratelimited(&t->reg_rl, "%s: DriverFeatures word %u = 0x%x ignored",
                                 t->name, t->driver_features_sel, val);
        return;
    }
    unsigned shift = 32 * t->driver_features_sel;
    t->driver_features =
        (t->driver_features & ~(0xffffffffULL << shift)) | ((uint64_t)val << shift);
}

static uint32_t read_reg(struct virtio_mmio *t, const struct reg_info *r)
{
    struct virtq *q;
    switch (r->offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION:
        return 2;
    case VIRTIO_MMIO_DEVICE_ID:
        return t->ops->device_id;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_MMIO_VENDOR;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        if (t->device_features_sel > 1)
            return 0;
        return (uint32_t)(offered_features(t) >> (32 * t->device_features_sel));
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        q = selected_queue(t, NULL);    /* 0 is how "no such queue" reads */
        return q ? q->max_size : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        q = selected_queue(t, NULL);
        return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return atomic_load(&t->interrupt_status);
    case VIRTIO_MMIO_STATUS:
        return vmmio_status(t) | (t->broken ? VIRTIO_STATUS_NEEDS_RESET : 0);
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
    case VIRTIO_MMIO_SHM_BASE_LOW:
    case VIRTIO_MMIO_SHM_BASE_HIGH:
        return 0xffffffffu;     /* all ones: no shared memory region */
    case VIRTIO_MMIO_QUEUE_RESET:
        return 0;               /* VIRTIO_F_RING_RESET is not offered */
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return atomic_load(&t->config_generation);
    default:
        return 0;
    }
}

static void write_reg(struct virtio_mmio *t, const struct reg_info *r, uint32_t val)
{
    switch (r->offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        t->device_features_sel = val;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        write_driver_features(t, val);
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        t->driver_features_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        t->queue_sel = val;     /* any value; checked where it is used */
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
        write_queue_num(t, val);
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        write_queue_ready(t, val);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        if (val < t->ops->num_queues)
            vmmio_kick(t, val);
        else
            log_warn_ratelimited(&t->reg_rl, "%s: QueueNotify for queue %u ignored (%u queues)",
                                 t->name, val, t->ops->num_queues);
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        atomic_fetch_and(&t->interrupt_status, ~val);
        break;
    case VIRTIO_MMIO_STATUS:
        write_status(t, val);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        write_queue_addr(t, r, val);
        break;
    case VIRTIO_MMIO_SHM_SEL:
        break;                  /* every region reads as absent */
    case VIRTIO_MMIO_QUEUE_RESET:
        log_warn_ratelimited(&t->reg_rl, "%s: QueueReset ignored (not offered)", t->name);
        break;
    }
}

/* Config space is the device model's: it serializes with its own lock, and
 * the offset check needs only the constant ops, so no transport lock. */
static void config_read(struct virtio_mmio *t, uint64_t offset, uint8_t *data, unsigned len)
{
    uint32_t off;
    if (!config_access_ok(t, offset, len, &off)) {
        log_warn_ratelimited(&t->reg_rl, "%s: config read of %u bytes at 0x%" PRIx64
                             " out of range (config size %u)", t->name, len, offset,
                             t->ops->config_size);
        return;
    }
    t->ops->config_read(t->dev, off, data, len);
}

static void config_write(struct virtio_mmio *t, uint64_t offset, const uint8_t *data,
                         unsigned len)
{
    uint32_t off;
    if (!config_access_ok(t, offset, len, &off)) {
        log_warn_ratelimited(&t->reg_rl, "%s: config write of %u bytes at 0x%" PRIx64
                             " out of range (config size %u)", t->name, len, offset,
                             t->ops->config_size);
        return;
    }
    if (!t->ops->config_write) {
        log_warn_ratelimited(&t->reg_rl, "%s: write to read-only config at 0x%x ignored",
                             t->name, off);
        return;
    }
    t->ops->config_write(t->dev, off, data, len);
}

/* virtio-mmio registers are 32 bits wide and accessed as such (4.2.2.2);
 * anything else, and unknown offsets, is a driver bug we refuse. */
static const struct reg_info *reg_access(struct virtio_mmio *t, uint64_t offset, unsigned len,
                                         uint8_t need, const char *dir)
{
    const struct reg_info *r = len == 4 ? reg_lookup(offset) : NULL;
    if (!r) {
        log_warn_ratelimited(&t->reg_rl, "%s: %u-byte %s at register offset 0x%" PRIx64
                             " ignored", t->name, len, dir, offset);
        return NULL;
    }
    if (!(r->access & need)) {
        log_warn_ratelimited(&t->reg_rl, "%s: %s of %s %s ignored", t->name, dir,
                             need == REG_W ? "read-only" : "write-only", r->name);
        return NULL;
    }
    return r;
}

static void mmio_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    struct virtio_mmio *t = opaque;
    memset(data, 0, len);
    if (offset >= VIRTIO_MMIO_CONFIG) {
        config_read(t, offset, data, len);
        return;
    }
    const struct reg_info *r = reg_access(t, offset, len, REG_R, "read");
    if (!r)
        return;
    uint32_t v;
    if (r->read_lock == REG_FREE) {
        v = read_reg(t, r);
    } else {
        pthread_mutex_lock(&t->lock);
        v = read_reg(t, r);
        pthread_mutex_unlock(&t->lock);
    }
    memcpy(data, &v, sizeof(v));
}

/* Writes that wait for queue work (REG_SERVE) only when they would stop it:
 * a reset, or a queue taken away. The rest of the Status progression only
 * happens while no queue is served (serving needs DRIVER_OK, which only a
 * reset clears). */
static bool stops_queue_work(const struct reg_info *r, uint32_t val)
{
    return r->write_lock == REG_SERVE && val == 0;
}

static void mmio_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    struct virtio_mmio *t = opaque;
    if (offset >= VIRTIO_MMIO_CONFIG) {
        config_write(t, offset, data, len);
        return;
    }
    const struct reg_info *r = reg_access(t, offset, len, REG_W, "write");
    if (!r)
        return;
    uint32_t v;
    memcpy(&v, data, sizeof(v));
    if (r->write_lock == REG_FREE) {
        write_reg(t, r, v);
        return;
    }
    bool serve = stops_queue_work(r, v);
    if (serve) {
        /* Ask the device thread to cut a long request short, then wait for
         * it: the driver may free the rings once this write returns. */
        atomic_fetch_add(&t->cancel, 1);
        pthread_mutex_lock(&t->serve_lock);
    }
    pthread_mutex_lock(&t->lock);
    write_reg(t, r, v);
    uint32_t raise = vmmio_take_raise_locked(t);
    pthread_mutex_unlock(&t->lock);
    if (serve) {
        pthread_mutex_unlock(&t->serve_lock);
        atomic_fetch_sub(&t->cancel, 1);
    }
    /* After unlocking: the irqfd write is KVM's business and may take its
     * locks; no vCPU should wait on ours meanwhile. */
    if (raise)
        vmmio_raise(t, raise);
}

const struct io_handler virtio_mmio_io = {.read = mmio_read, .write = mmio_write};
