/* Parsing of one --virtio-mem value: ID:SIZE[,node=N][,block=SIZE]
 * [,slot=SIZE][,requested=SIZE][,prealloc=on|off][,guard=on|off]
 * [,hugepages=SIZE]. */
#ifndef MINIVMM_VIRTIO_MEM_OPTS_H
#define MINIVMM_VIRTIO_MEM_OPTS_H

#include <stddef.h>

#include "vmm/config.h"

/* Fills *o from text. Returns 0, or -EINVAL with a one-line reason in err
 * (without the option name; the caller prefixes it). */
int virtio_mem_opts_parse(const char *text, struct virtio_mem_opts *o, char *err, size_t errlen);

#endif
