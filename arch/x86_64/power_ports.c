#include "arch/x86_64/power_ports.h"

#include <string.h>

#include "arch/x86_64/layout.h"
#include "vmm/vm.h"

/* ACPI 6.x "hardware-reduced" sleep control register layout. */
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK 0x7
#define SLP_EN 0x20
#define ACPI_S5_SLP_TYP 5       /* the DSDT's \_S5 package says 5 */

#define I8042_CMD_PULSE_RESET 0xfe

static void acpi_pm_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    /* Sleep status: never "woken"; reset register reads as zero. */
    memset(data, 0, len);
}

static void acpi_pm_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    struct vm *vm = opaque;
    uint64_t port = X86_ACPI_SLEEP_CONTROL_PORT + offset;
    uint8_t v = data[0];

    if (port == X86_ACPI_SLEEP_CONTROL_PORT && (v & SLP_EN)) {
        unsigned slp_typ = (v >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
        if (slp_typ == ACPI_S5_SLP_TYP)
            vm_request_stop(vm, VM_STOP_POWEROFF, "guest powered off (ACPI S5)");
    } else if (port == X86_ACPI_RESET_PORT && v == X86_ACPI_RESET_VALUE) {
        vm_request_stop(vm, VM_STOP_REBOOT, "guest requested a reboot (ACPI reset)");
    }
}

static const struct io_handler acpi_pm_io = {.read = acpi_pm_read, .write = acpi_pm_write};

#define SYSTEM_CONTROL_TIMER2_OUT 0x20

static void i8042_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    /* Status 0: both buffers empty, so a reset command may be written. */
    memset(data, 0, len);
    /* There is no PIT. A guest calibrating its TSC against PIT channel 2
     * (Linux without kvm-clock) spins until that channel's output goes high:
     * reading it high at once makes the calibration fail fast and fall back,
     * never hang. */
    if (offset == X86_SYSTEM_CONTROL_PORT - X86_I8042_DATA_PORT)
        data[0] = SYSTEM_CONTROL_TIMER2_OUT;
}

static void i8042_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    struct vm *vm = opaque;
    if (offset == X86_I8042_CMD_PORT - X86_I8042_DATA_PORT && data[0] == I8042_CMD_PULSE_RESET)
        vm_request_stop(vm, VM_STOP_REBOOT, "guest requested a reboot (keyboard controller)");
}

static const struct io_handler i8042_io = {.read = i8042_read, .write = i8042_write};

int x86_power_ports_register(struct io_bus *pio, struct vm *vm)
{
    int rc = io_bus_register(pio, X86_ACPI_SLEEP_CONTROL_PORT,
                             X86_ACPI_RESET_PORT - X86_ACPI_SLEEP_CONTROL_PORT + 1, &acpi_pm_io,
                             vm, "acpi-pm");
    if (rc)
        return rc;
    /* Data port 0x60 through command port 0x64, and the system control
     * port 0x61 between them. */
    return io_bus_register(pio, X86_I8042_DATA_PORT,
                           X86_I8042_CMD_PORT - X86_I8042_DATA_PORT + 1, &i8042_io, vm, "i8042");
}
