#include "arch/arm64/loader.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/arm64/layout.h"
#include "vmm/log.h"

/* Opens a regular file for an option; its size in *size. */
static int open_input(const char *option, const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("%s %s: %s", option, path, strerror(errno));
        return -ENOEXEC;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        log_error("%s %s: not a non-empty regular file", option, path);
        close(fd);
        return -ENOEXEC;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

static int read_exactly(int fd, const char *option, const char *path, void *dst, uint64_t len)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)dst + done, len - done, (off_t)done);
        if (n <= 0) {
            log_error("%s %s: read: %s", option, path, n < 0 ? strerror(errno) : "short file");
            return -ENOEXEC;
        }
        done += (uint64_t)n;
    }
    return 0;
}

/* The plan, with the kernel file still open (its fd returned). */
static int plan_open(const struct vm_config *cfg, struct arm64_image_info *image,
                     struct arm64_boot_plan *plan)
{
    uint64_t kernel_len, initrd_len = 0;
    int fd = open_input("--kernel", cfg->kernel_path, &kernel_len);
    if (fd < 0)
        return fd;
    uint8_t header[ARM64_IMAGE_HEADER_SIZE];
    uint64_t header_len = kernel_len < sizeof(header) ? kernel_len : sizeof(header);
    int rc = read_exactly(fd, "--kernel", cfg->kernel_path, header, header_len);
    const char *why = NULL;
    if (!rc && arm64_image_parse(header, (size_t)header_len, kernel_len, image, &why) < 0) {
        log_error("--kernel %s: %s", cfg->kernel_path, why);
        rc = -ENOEXEC;
    }
    if (!rc && cfg->initrd_path) {
        int ifd = open_input("--initrd", cfg->initrd_path, &initrd_len);
        if (ifd < 0)
            rc = ifd;
        else
            close(ifd);
    }
    if (!rc) {
        char reason[256];
        if (arm64_plan_boot(ARM64_RAM_BASE, cfg->mem_size, image, initrd_len, plan, reason,
                            sizeof(reason)) < 0) {
            log_error("%s", reason);
            rc = -ENOEXEC;
        }
    }
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int arm64_loader_plan(const struct vm_config *cfg, struct arm64_image_info *image,
                      struct arm64_boot_plan *plan)
{
    int fd = plan_open(cfg, image, plan);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

static int load_initrd(const struct vm_config *cfg, const struct guest_mem *gm,
                       const struct arm64_boot_plan *plan)
{
    uint64_t len;
    int fd = open_input("--initrd", cfg->initrd_path, &len);
    if (fd < 0)
        return fd;
    int rc = 0;
    /* The file changed since the plan was made: plan again next time. */
    if (len != plan->initrd_size) {
        log_error("--initrd %s: changed size while loading", cfg->initrd_path);
        rc = -ENOEXEC;
    }
    uint8_t *dst = rc ? NULL : guest_mem_ptr(gm, plan->initrd_addr, len);
    if (!rc && !dst)
        rc = -EFAULT;
    if (!rc)
        rc = read_exactly(fd, "--initrd", cfg->initrd_path, dst, len);
    close(fd);
    return rc;
}

static bool same_plan(const struct arm64_boot_plan *a, const struct arm64_boot_plan *b)
{
    return a->kernel_base == b->kernel_base && a->kernel_entry == b->kernel_entry &&
           a->kernel_end == b->kernel_end && a->initrd_addr == b->initrd_addr &&
           a->initrd_size == b->initrd_size && a->fdt_addr == b->fdt_addr;
}

int arm64_loader_load(const struct vm_config *cfg, const struct guest_mem *gm,
                      const struct arm64_boot_plan *planned)
{
    struct arm64_image_info image;
    struct arm64_boot_plan plan;
    int fd = plan_open(cfg, &image, &plan);
    if (fd < 0)
        return fd;
    /* The device tree and the boot vCPU already use the plan: files that
     * changed since would boot a mix. */
    if (!same_plan(&plan, planned)) {
        log_error("--kernel %s or --initrd: changed while the VM was being built",
                  cfg->kernel_path);
        close(fd);
        return -ENOEXEC;
    }
    /* The Image is read straight into guest memory at its load address. */
    uint8_t *dst = guest_mem_ptr(gm, plan.kernel_entry, image.load_size);
    int rc = dst ? read_exactly(fd, "--kernel", cfg->kernel_path, dst, image.load_size)
                 : -EFAULT;
    close(fd);
    if (!rc && cfg->initrd_path)
        rc = load_initrd(cfg, gm, &plan);
    return rc;
}
