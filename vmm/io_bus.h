/* Dispatch of port-I/O and MMIO exits to the device that owns the address.
 * Devices register before the vCPUs start; lookups are lock-free after that. */
#ifndef MINIVMM_IO_BUS_H
#define MINIVMM_IO_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define IO_BUS_MAX_DEVICES 96

struct io_handler {
    /* offset is relative to the registered base; len is 1, 2, 4 or 8. */
    void (*read)(void *opaque, uint64_t offset, uint8_t *data, unsigned len);
    void (*write)(void *opaque, uint64_t offset, const uint8_t *data, unsigned len);
};

struct io_bus_entry {
    uint64_t base;
    uint64_t len;
    const struct io_handler *ops;
    void *opaque;
    const char *name;
};

struct io_bus {
    const char *name;       /* "pio" or "mmio", for messages */
    struct io_bus_entry entries[IO_BUS_MAX_DEVICES];
    unsigned n;
};

void io_bus_init(struct io_bus *bus, const char *name);

/* -EEXIST if [base, base+len) overlaps a registered range, -ENOSPC if full. */
int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len,
                    const struct io_handler *ops, void *opaque, const char *name);

/* Returns false when no device claims the access; reads then see all-ones. */
bool io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, unsigned len);
bool io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, unsigned len);

#endif
