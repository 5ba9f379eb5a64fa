/* An interrupt line into the guest: an eventfd bound to a GSI with KVM_IRQFD,
 * so any thread raises an edge-triggered interrupt with one write(). */
#ifndef MINIVMM_IRQ_H
#define MINIVMM_IRQ_H

#include <stdint.h>

struct irq_line {
    int eventfd;
    uint32_t gsi;
};

/* vm_fd < 0 creates only the eventfd (unit tests read it to see triggers). */
int irq_line_init(struct irq_line *line, int vm_fd, uint32_t gsi);
void irq_line_trigger(const struct irq_line *line);
void irq_line_destroy(struct irq_line *line, int vm_fd);

#endif
