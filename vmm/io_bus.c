#include "vmm/io_bus.h"

#include <errno.h>
#include <string.h>

#include "vmm/log.h"

void io_bus_init(struct io_bus *bus, const char *name)
{
    memset(bus, 0, sizeof(*bus));
    bus->name = name;
}

int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len,
                    const struct io_handler *ops, void *opaque, const char *name)
{
    if (len == 0 || base + len < base)
        return -EINVAL;
    for (unsigned i = 0; i < bus->n; i++) {
        const struct io_bus_entry *e = &bus->entries[i];
        if (base < e->base + e->len && e->base < base + len) {
            log_error("%s: %s at 0x%llx overlaps %s at 0x%llx", bus->name, name,
                      (unsigned long long)base, e->name, (unsigned long long)e->base);
            return -EEXIST;
        }
    }
    if (bus->n == IO_BUS_MAX_DEVICES)
        return -ENOSPC;
    bus->entries[bus->n++] = (struct io_bus_entry){base, len, ops, opaque, name};
    return 0;
}

static const struct io_bus_entry *find(const struct io_bus *bus, uint64_t addr, unsigned len)
{
    for (unsigned i = 0; i < bus->n; i++) {
        const struct io_bus_entry *e = &bus->entries[i];
        /* The whole access must fall inside the device's window. */
        if (addr >= e->base && addr - e->base < e->len && len <= e->len - (addr - e->base))
            return e;
    }
    return NULL;
}

bool io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, unsigned len)
{
    const struct io_bus_entry *e = find(bus, addr, len);
    if (!e || !e->ops->read) {
        memset(data, 0xff, len);
        return e != NULL;
    }
    e->ops->read(e->opaque, addr - e->base, data, len);
    return true;
}

bool io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, unsigned len)
{
    const struct io_bus_entry *e = find(bus, addr, len);
    if (!e)
        return false;
    if (e->ops->write)
        e->ops->write(e->opaque, addr - e->base, data, len);
    return true;
}
