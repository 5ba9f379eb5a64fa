/* The two ways an x86 guest asks to power off or reset without firmware:
 * the ACPI hardware-reduced sleep/reset registers named in the FADT, and the
 * i8042 keyboard controller's reset line (Linux's reboot=k fallback). */
#ifndef MINIVMM_ARCH_X86_64_POWER_PORTS_H
#define MINIVMM_ARCH_X86_64_POWER_PORTS_H

struct vm;

/* Registers both port ranges on vm->pio. */
int x86_power_ports_register(struct vm *vm);

#endif
