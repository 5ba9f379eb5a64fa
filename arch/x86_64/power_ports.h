/* The two ways an x86 guest asks to power off or reset without firmware:
 * the ACPI hardware-reduced sleep/reset registers named in the FADT, and the
 * i8042 keyboard controller's reset line (Linux's reboot=k fallback). */
#ifndef MINIVMM_ARCH_X86_64_POWER_PORTS_H
#define MINIVMM_ARCH_X86_64_POWER_PORTS_H

struct vm;
struct io_bus;

/* Registers both port ranges on pio; the stops they cause go to vm. */
int x86_power_ports_register(struct io_bus *pio, struct vm *vm);

#endif
