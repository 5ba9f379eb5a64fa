/* x86_64 implementation of vmm/arch.h. */
#include "vmm/arch.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/acpi_tables.h"
#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/bzimage.h"
#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/power_ports.h"
#include "arch/x86_64/x86_vm.h"
#include "vmm/log.h"

/* KVM on Intel needs three pages for the real-mode TSS and one for the
 * identity map; both sit in the 4 GiB hole, clear of RAM and devices. */
#define X86_KVM_TSS_ADDR 0xfffbd000ULL
#define X86_KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL
#define X86_MAX_KERNEL_FILE (512ULL << 20)
#define X86_CPUID_SPARE_ENTRIES 8

/* The MADT lists 8-bit xAPIC ids, and 0xff is the broadcast id; x2APIC
 * would lift it. */
#define X86_MAX_VCPUS 255
/* Linux's memory block on x86_64 (SECTION_SIZE_BITS 27). */
#define X86_GUEST_MEMORY_BLOCK (128ULL << 20)

const char *arch_default_cmdline(void)
{
    return "console=ttyS0";
}

const char *arch_kernel_format(void)
{
    return "x86_64 bzImage";
}

unsigned arch_max_vcpus(void)
{
    return X86_MAX_VCPUS;
}

uint64_t arch_guest_memory_block(void)
{
    return X86_GUEST_MEMORY_BLOCK;
}

/* The SRAT (arch_describe_devices) puts each region on its node, so the
 * device's node_id is a proximity domain the guest knows. */
bool arch_virtio_mem_acpi_pxm(void)
{
    return true;
}

int arch_check_config(const struct vm_config *cfg, char *err, size_t errlen)
{
    (void)cfg; (void)err; (void)errlen;
    return 0;           /* every option the CLI accepts works on x86_64 */
}

int arch_kvm_vm_type(struct vm *vm, unsigned long *type)
{
    (void)vm;
    *type = 0;          /* KVM_X86_DEFAULT_VM */
    return 0;
}

int arch_ram_layout(uint64_t mem_size, struct mem_range *ranges, unsigned max, unsigned *n)
{
    if (max < 2)
        return -EINVAL;
    /* RAM fills from 0 up to the 32-bit MMIO hole, the rest continues at 4 GiB. */
    ranges[0] = (struct mem_range){0, mem_size < X86_MMIO32_START ? mem_size : X86_MMIO32_START};
    *n = 1;
    if (mem_size > X86_MMIO32_START) {
        ranges[1] = (struct mem_range){X86_4GIB, mem_size - X86_MMIO32_START};
        *n = 2;
    }
    return 0;
}

void arch_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end)
{
    uint64_t ram_end = mem_size <= X86_MMIO32_START ? X86_4GIB
                                                    : X86_4GIB + (mem_size - X86_MMIO32_START);
    *start = ram_end;
    /* The guest sees the host's physical address width (CPUID 0x80000008
     * passes through) and KVM maps no more; 46 bits caps it where paging
     * modes and older CPUs agree. */
    unsigned eax, ebx, ecx, edx, bits = 36;
    if (__get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx) && eax >= 0x80000008 &&
        __get_cpuid(0x80000008, &eax, &ebx, &ecx, &edx))
        bits = eax & 0xff;
    if (bits > 46)
        bits = 46;
    if (bits < 36)
        bits = 36;
    *end = 1ULL << bits;
}

void arch_device_irq_range(uint32_t *first, uint32_t *last)
{
    *first = X86_FIRST_DEVICE_GSI;
    *last = X86_LAST_DEVICE_GSI;
}

uint64_t arch_device_mmio_base(unsigned index)
{
    return X86_VIRTIO_MMIO_BASE + (uint64_t)index * X86_VIRTIO_MMIO_STRIDE;
}

static int vm_ioctl(struct vm *vm, unsigned long req, unsigned long arg, const char *name)
{
    if (ioctl(vm->vm_fd, req, arg) < 0) {
        int err = errno;
        log_error("%s: %s", name, strerror(err));
        return -err;
    }
    return 0;
}

int arch_vm_init(struct vm *vm)
{
    struct x86_vm *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    vm->arch = x;
    io_bus_init(&x->pio, "pio");
    x->kernel.fd = x->initrd.fd = -1;
    arch_ram_layout(vm->cfg->mem_size, x->ram, ARCH_MAX_RAM_RANGES, &x->n_ram);

    int rc = vm_ioctl(vm, KVM_SET_TSS_ADDR, X86_KVM_TSS_ADDR, "KVM_SET_TSS_ADDR");
    if (rc)
        return rc;
    if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        uint64_t addr = X86_KVM_IDENTITY_MAP_ADDR;
        rc = vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, (unsigned long)&addr,
                      "KVM_SET_IDENTITY_MAP_ADDR");
        if (rc)
            return rc;
    }
    /* In-kernel PIC + IOAPIC + local APICs: interrupts never need a trip
     * through userspace, and irqfd requires them. */
    rc = vm_ioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
    if (rc)
        return rc;
    /* No PIT (KVM_CREATE_PIT2), as in Cloud Hypervisor: under
     * hardware-reduced ACPI Linux has no legacy IRQs and never starts the
     * PIT timer, and with kvm-clock it calibrates the TSC and the LAPIC timer
     * without it. An in-kernel PIT would cost a kernel timer per VM and an
     * SRCU grace period in every VM teardown (its IRQ-ack notifier). */

    x->supported_cpuid = x86_supported_cpuid(vm->kvm_fd, X86_CPUID_SPARE_ENTRIES);
    if (!x->supported_cpuid)
        return -ENOTSUP;
    /* KVM emulates the TSC-deadline timer in its in-kernel LAPIC but (before
     * Linux 6.14) leaves the bit out of KVM_GET_SUPPORTED_CPUID: the API
     * documentation has userspace with KVM_CREATE_IRQCHIP set it when
     * KVM_CAP_TSC_DEADLINE_TIMER is there, as other VMMs do. Without it Linux
     * runs its LAPIC timer in one-shot mode on a frequency it calibrates. */
    x86_cpuid_set_tsc_deadline(x->supported_cpuid,
                               ioctl(vm->vm_fd, KVM_CHECK_EXTENSION,
                                     KVM_CAP_TSC_DEADLINE_TIMER) > 0);
    return 0;
}

int arch_vm_finalize(struct vm *vm)
{
    (void)vm;           /* the irqchip was complete at KVM_CREATE_IRQCHIP */
    return 0;
}

/* COM1 (the console) and the ACPI power and i8042 reset ports. */
int arch_devices_create(struct vm *vm)
{
    struct x86_vm *x = vm->arch;
    /* Level-triggered, as the _CRS in arch/x86_64/acpi_tables.c says. */
    int rc = irq_level_init(&x->com1_irq, vm->vm_fd, X86_COM1_GSI);
    if (rc)
        return rc;
    x->com1_irq_ready = true;
    rc = serial_16550_init(&x->com1, &x->com1_irq);
    if (rc) {
        log_error("com1: %s", strerror(-rc));
        return rc;
    }
    x->com1_ready = true;
    rc = io_bus_register(&x->pio, X86_COM1_PORT, SERIAL_REG_COUNT, &serial_16550_io, &x->com1,
                         "com1");
    if (rc)
        return rc;
    vm->console = serial_16550_console_port(&x->com1);
    return x86_power_ports_register(&x->pio, vm);
}

/* Reads len bytes at offset off of fd into dst (guest memory or a buffer):
 * 0, or -ENOEXEC (logged) when the file is shorter or unreadable. */
static int read_file_at(int fd, const char *option, const char *path, uint8_t *dst,
                        uint64_t len, uint64_t off)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, dst + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_error("%s %s: read: %s", option, path, n < 0 ? strerror(errno) : "short file");
            return -ENOEXEC;
        }
        done += (uint64_t)n;
    }
    return 0;
}

/* Opens the kernel and reads its head (boot sector and setup header) into
 * head, which holds BZIMAGE_HEAD_SIZE bytes; its length in *file_len.
 * Nothing else of the file is read here: the protected-mode kernel goes
 * straight from the file into guest memory (arch_load_payload), so no copy of the
 * image stays in the VMM's heap (a malloc'd 14 MiB image was kept by glibc
 * after free: it raised the mmap threshold). Returns the open fd or a
 * negative errno (logged). */
static int open_kernel(const char *path, uint8_t *head, uint64_t *file_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("--kernel %s: %s", path, strerror(errno));
        return -ENOEXEC;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > X86_MAX_KERNEL_FILE) {
        log_error("--kernel %s: not a regular file of at most 512 MiB", path);
        close(fd);
        return -ENOEXEC;
    }
    *file_len = (uint64_t)st.st_size;
    memset(head, 0, BZIMAGE_HEAD_SIZE);
    size_t want = *file_len < BZIMAGE_HEAD_SIZE ? (size_t)*file_len : BZIMAGE_HEAD_SIZE;
    int rc = read_file_at(fd, "--kernel", path, head, want, 0);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Opens and validates the kernel: the fd (or a negative errno, logged) with
 * its parsed header in *k and its head in head. */
static int open_bzimage(const char *path, uint8_t *head, struct bzimage_info *k)
{
    uint64_t file_len;
    int fd = open_kernel(path, head, &file_len);
    if (fd < 0)
        return fd;
    const char *why;
    int rc = bzimage_parse(head, BZIMAGE_HEAD_SIZE, file_len, k, &why);
    if (rc) {
        log_error("--kernel %s: %s", path, why);
        close(fd);
        return rc;
    }
    return fd;
}

/* Places the initrd at the highest page-aligned address the kernel accepts,
 * above the kernel's own working area; arch_load_payload reads it there. */
static int plan_initrd(struct vm *vm, const struct bzimage_info *k)
{
    const char *path = vm->cfg->initrd_path;
    struct x86_vm *x = vm->arch;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("--initrd %s: %s", path, strerror(errno));
        return -ENOEXEC;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        log_error("--initrd %s: not a non-empty regular file", path);
        close(fd);
        return -ENOEXEC;
    }
    uint64_t len = (uint64_t)st.st_size;
    uint64_t limit = x->ram[0].size;
    if (k->initrd_addr_max && (uint64_t)k->initrd_addr_max + 1 < limit)
        limit = (uint64_t)k->initrd_addr_max + 1;
    uint64_t kernel_end = (k->load_addr + k->init_size + 0xfff) & ~0xfffULL;
    if (len > limit || ((limit - len) & ~0xfffULL) < kernel_end) {
        log_error("--initrd %s: %llu MiB does not fit in low memory next to the kernel "
                  "(raise --mem)", path, (unsigned long long)(len >> 20));
        close(fd);
        return -ENOEXEC;
    }
    x->initrd = (struct x86_payload){
        .fd = fd, .file_off = 0, .gpa = (limit - len) & ~0xfffULL, .len = len};
    return 0;
}

/* Reads one planned file into guest memory and closes it. */
static int read_payload(struct vm *vm, struct x86_payload *p, const char *option,
                        const char *path)
{
    if (p->fd < 0)
        return 0;
    uint8_t *dst = guest_mem_ptr(&vm->mem, p->gpa, p->len);
    int rc = dst ? read_file_at(p->fd, option, path, dst, p->len, p->file_off) : -EFAULT;
    close(p->fd);
    p->fd = -1;
    return rc;
}

int arch_check_kernel(const struct vm_config *cfg)
{
    uint8_t head[BZIMAGE_HEAD_SIZE];
    struct bzimage_info k;
    struct mem_range ram[ARCH_MAX_RAM_RANGES];
    unsigned n_ram;

    int fd = open_bzimage(cfg->kernel_path, head, &k);
    if (fd < 0)
        return fd;
    close(fd);
    arch_ram_layout(cfg->mem_size, ram, ARCH_MAX_RAM_RANGES, &n_ram);
    if (k.load_addr + k.init_size > ram[0].size) {
        log_error("--kernel %s: needs %llu MiB of memory to decompress; raise --mem",
                  cfg->kernel_path, (unsigned long long)((k.load_addr + k.init_size) >> 20) + 1);
        return -ENOEXEC;
    }
    const char *cmdline = cfg->cmdline ? cfg->cmdline : arch_default_cmdline();
    size_t cmdline_len = strlen(cmdline);
    /* Protocols before 2.06 do not state a limit; 255 was theirs. */
    uint32_t cmdline_max = k.protocol >= 0x0206 ? k.cmdline_size : 255;
    if (cmdline_len > cmdline_max || cmdline_len >= X86_CMDLINE_MAX) {
        log_error("--cmdline: %zu bytes, this kernel accepts at most %u", cmdline_len,
                  cmdline_max);
        return -ENOEXEC;
    }
    return 0;
}

int arch_load_kernel(struct vm *vm)
{
    struct x86_vm *x = vm->arch;
    const char *path = vm->cfg->kernel_path;
    uint8_t head[BZIMAGE_HEAD_SIZE];
    struct bzimage_info k;

    int fd = open_bzimage(path, head, &k);
    if (fd < 0)
        return fd;
    /* The file may have changed since arch_check_kernel: this parse is the
     * one that counts. The protected-mode kernel is read from this fd by
     * arch_load_payload; that it fits in RAM is checked here. */
    if (!guest_mem_ptr(&vm->mem, k.load_addr, k.payload_size)) {
        close(fd);
        return -EFAULT;
    }
    x->kernel = (struct x86_payload){
        .fd = fd, .file_off = k.setup_size, .gpa = k.load_addr, .len = k.payload_size};
    int rc;

    const char *cmdline = vm->cfg->cmdline ? vm->cfg->cmdline : arch_default_cmdline();
    size_t cmdline_len = strlen(cmdline);
    rc = guest_mem_write(&vm->mem, X86_CMDLINE_ADDR, cmdline, cmdline_len + 1);
    if (rc)
        return rc;

    if (vm->cfg->initrd_path) {
        rc = plan_initrd(vm, &k);
        if (rc)
            return rc;
    }

    rc = x86_write_boot_tables(&vm->mem);
    if (rc)
        return rc;

    struct boot_params bp;
    struct x86_boot_info info = {
        .kernel_header = head,
        .kernel_header_len = sizeof(head),
        .cmdline_addr = X86_CMDLINE_ADDR,
        .cmdline_len = (uint32_t)cmdline_len,
        .initrd_addr = x->initrd.fd >= 0 ? x->initrd.gpa : 0,
        .initrd_size = x->initrd.fd >= 0 ? x->initrd.len : 0,
        .rsdp_addr = X86_ACPI_TABLES_ADDR,
        .ram = x->ram,
        .n_ram = x->n_ram,
    };
    rc = x86_build_boot_params(&bp, &info);
    if (rc) {
        log_error("--kernel %s: cannot build boot parameters: %s", path, strerror(-rc));
        rc = -ENOEXEC;
        return rc;
    }
    rc = guest_mem_write(&vm->mem, X86_ZERO_PAGE_ADDR, &bp, sizeof(bp));
    x->entry = k.entry64;
    return rc;
}

int arch_load_payload(struct vm *vm)
{
    struct x86_vm *x = vm->arch;
    int rc = read_payload(vm, &x->kernel, "--kernel", vm->cfg->kernel_path);
    if (!rc)
        rc = read_payload(vm, &x->initrd, "--initrd", vm->cfg->initrd_path);
    return rc;
}

int arch_describe_devices(struct vm *vm)
{
    struct x86_vm *x = vm->arch;
    struct acpi_mmio_device mmio[VM_MAX_DEVICES];
    struct acpi_mem_affinity mem[ARCH_MAX_RAM_RANGES + VM_MAX_DEVICES];
    size_t n_mmio = 0, n_hotplug = 0, n_mem = 0;

    /* With hotpluggable memory the guest needs an SRAT to put it on its node
     * (and to know the node exists at all); an SRAT must then also cover
     * every byte of boot RAM, which lives on node 0 with the CPUs. */
    for (unsigned i = 0; i < x->n_ram; i++)
        mem[n_mem++] = (struct acpi_mem_affinity){
            .base = x->ram[i].gpa, .size = x->ram[i].size, .node = 0};
    for (unsigned i = 0; i < vm->n_devices; i++) {
        const struct vm_device_info *d = &vm->devices[i];
        if (d->kind == VM_DEVICE_VIRTIO_MMIO) {
            mmio[n_mmio] = (struct acpi_mmio_device){
                .base = d->mmio_base, .size = d->mmio_size, .gsi = d->irq,
                .uid = (uint32_t)n_mmio};
            n_mmio++;
        } else if (d->kind == VM_DEVICE_HOTPLUG_MEMORY) {
            mem[n_mem++] = (struct acpi_mem_affinity){
                .base = d->mmio_base, .size = d->mmio_size, .node = d->node,
                .hotpluggable = true};
            n_hotplug++;
        }
    }
    struct acpi_config cfg = {
        .ncpus = vm->cfg->ncpus,
        .mmio = mmio,
        .n_mmio = n_mmio,
        .mem = n_hotplug ? mem : NULL,
        .n_mem = n_hotplug ? n_mem : 0,
    };
    uint8_t *dst = guest_mem_ptr(&vm->mem, X86_ACPI_TABLES_ADDR, X86_ACPI_TABLES_SIZE);
    if (!dst)
        return -EFAULT;
    uint64_t rsdp;
    size_t used;
    int rc = acpi_build_tables(&cfg, dst, X86_ACPI_TABLES_SIZE, X86_ACPI_TABLES_ADDR, &rsdp, &used);
    if (rc) {
        log_error("building ACPI tables: %s", strerror(-rc));
        return rc;
    }
    log_debug("ACPI tables: %zu bytes at 0x%llx", used, (unsigned long long)rsdp);
    return 0;
}

int arch_vcpu_init(struct vm *vm, struct vcpu *vcpu)
{
    struct x86_vm *x = vm->arch;
    const struct kvm_cpuid2 *base = x->supported_cpuid;
    size_t capacity = base->nent + X86_CPUID_SPARE_ENTRIES;
    size_t bytes = sizeof(*base) + capacity * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = malloc(bytes);
    if (!cpuid)
        return -ENOMEM;
    memcpy(cpuid, base, sizeof(*base) + base->nent * sizeof(struct kvm_cpuid_entry2));
    int rc = x86_cpuid_adjust(cpuid, (unsigned)capacity, vcpu->index, vm->cfg->ncpus);
    if (rc == 0 && ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0) {
        rc = -errno;
        log_error("KVM_SET_CPUID2 vCPU %u: %s", vcpu->index, strerror(errno));
    }
    free(cpuid);
    if (rc)
        return rc;

    rc = x86_set_msrs(vcpu->fd, vcpu->index);
    if (!rc)
        rc = x86_set_fpu(vcpu->fd, vcpu->index);
    if (!rc)
        rc = x86_set_lapic(vcpu->fd, vcpu->index);
    if (!rc && vcpu->index == 0)
        rc = x86_set_boot_regs(vcpu->fd, x->entry, X86_ZERO_PAGE_ADDR);
    return rc;
}

void arch_vm_destroy(struct vm *vm)
{
    struct x86_vm *x = vm->arch;
    if (!x)
        return;
    if (x->com1_ready)
        serial_16550_destroy(&x->com1);
    if (x->com1_irq_ready)
        irq_level_destroy(&x->com1_irq);
    if (x->kernel.fd >= 0)
        close(x->kernel.fd);
    if (x->initrd.fd >= 0)
        close(x->initrd.fd);
    free(x->supported_cpuid);
    free(x);
    vm->arch = NULL;
    vm->console = (struct console_port){.notify_fd = -1};
}
