#include "vmm/irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/log.h"

int irq_line_init(struct irq_line *line, int vm_fd, uint32_t gsi)
{
    line->gsi = gsi;
    line->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (line->eventfd < 0) {
        int err = errno;
        log_error("eventfd for GSI %u: %s", gsi, strerror(err));
        return -err;
    }
    if (vm_fd < 0)
        return 0;
    struct kvm_irqfd req = {.fd = (uint32_t)line->eventfd, .gsi = gsi};
    if (ioctl(vm_fd, KVM_IRQFD, &req) < 0) {
        int err = errno;
        log_error("KVM_IRQFD GSI %u: %s", gsi, strerror(err));
        close(line->eventfd);
        line->eventfd = -1;
        return -err;
    }
    return 0;
}

void irq_line_trigger(const struct irq_line *line)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: an interrupt is pending anyway. */
    if (write(line->eventfd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        static struct log_ratelimit rl;
        log_warn_ratelimited(&rl, "raising GSI %u: %s", line->gsi, strerror(errno));
    }
}

void irq_line_destroy(struct irq_line *line, int vm_fd)
{
    if (line->eventfd < 0)
        return;
    if (vm_fd >= 0) {
        struct kvm_irqfd req = {
            .fd = (uint32_t)line->eventfd, .gsi = line->gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN};
        ioctl(vm_fd, KVM_IRQFD, &req);
    }
    close(line->eventfd);
    line->eventfd = -1;
}
