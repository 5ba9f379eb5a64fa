/* Reads the user's kernel Image and initrd: their checks before any KVM
 * resource exists, and their loading into boot RAM by the boot plan. Every
 * problem with a file is the user's (-ENOEXEC, logged naming the option). */
#ifndef MINIVMM_ARCH_ARM64_LOADER_H
#define MINIVMM_ARCH_ARM64_LOADER_H

#include "arch/arm64/boot_plan.h"
#include "vmm/config.h"
#include "vmm/guest_mem.h"

/* Reads the Image header and the initrd's size, and plans the boot into
 * cfg's boot RAM. Returns 0, or -ENOEXEC with the problem logged. */
int arm64_loader_plan(const struct vm_config *cfg, struct arm64_image_info *image,
                      struct arm64_boot_plan *plan);

/* Plans again and copies the Image and the initrd into gm where the plan
 * puts them; a plan that differs from planned (the files changed since
 * arm64_loader_plan) is refused with -ENOEXEC. */
int arm64_loader_load(const struct vm_config *cfg, const struct guest_mem *gm,
                      const struct arm64_boot_plan *planned);

#endif
