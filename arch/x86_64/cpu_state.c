#include "arch/x86_64/cpu_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86_64/layout.h"
#include "vmm/log.h"

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define PTE_PRESENT 0x1ull
#define PTE_WRITE 0x2ull
#define PTE_HUGE 0x80ull

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define BOOT_TSS 0x20

#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_MISC_ENABLE_FAST_STRING 1ull
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MTRR_ENABLE (1ull << 11)
#define MTRR_TYPE_WRBACK 6ull

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

/* A GDT descriptor from its flags (G, D/B, L, AVL, P, DPL, S, type packed
 * the way the hardware stores them), base and 20-bit limit. */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
           ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
           (uint64_t)(limit & 0x0000ffffu);
}

static struct kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector)
{
    return (struct kvm_segment){
        .base = (uint32_t)(((entry >> 16) & 0xffffff) | ((entry >> 32) & 0xff000000)),
        .limit = (uint32_t)((entry & 0xffff) | ((entry >> 32) & 0xf0000)),
        .selector = selector,
        .type = (uint8_t)((entry >> 40) & 0xf),
        .present = (uint8_t)((entry >> 47) & 1),
        .dpl = (uint8_t)((entry >> 45) & 3),
        .db = (uint8_t)((entry >> 54) & 1),
        .s = (uint8_t)((entry >> 44) & 1),
        .l = (uint8_t)((entry >> 53) & 1),
        .g = (uint8_t)((entry >> 55) & 1),
        .avl = (uint8_t)((entry >> 52) & 1),
    };
}

/* Entries 0 (null) and 1 (unused) stay zero; the boot protocol fixes the
 * selectors BOOT_CS and BOOT_DS. */
static void fill_gdt(uint64_t gdt[5])
{
    memset(gdt, 0, 5 * sizeof(gdt[0]));
    gdt[BOOT_CS / 8] = gdt_entry(0xa09b, 0, 0xfffff);   /* 64-bit code, execute/read */
    gdt[BOOT_DS / 8] = gdt_entry(0xc093, 0, 0xfffff);   /* flat data, read/write */
    gdt[BOOT_TSS / 8] = gdt_entry(0x808b, 0, 0xfffff);  /* busy TSS: VM entry wants one */
}

/* 16-bit code at the reset vector F000:FFF0, where a PC's firmware starts.
 * Linux reaches it on reboot: with hardware-reduced ACPI it prefers EFI reset,
 * and without EFI falls back to a real-mode jump here (BOOT_BIOS). Having no
 * firmware, the "reset" is a write of the ACPI reset value to the reset
 * register, which ends the VM like any other reset request. */
static const uint8_t reset_vector_stub[] = {
    0xb0, X86_ACPI_RESET_VALUE,                                   /* mov al, value */
    0xba, X86_ACPI_RESET_PORT & 0xff, X86_ACPI_RESET_PORT >> 8,   /* mov dx, port */
    0xee,                                                         /* out dx, al */
    0xf4,                                                         /* 1: hlt */
    0xeb, 0xfd,                                                   /* jmp 1b */
};

int x86_write_boot_tables(const struct guest_mem *gm)
{
    if (guest_mem_write(gm, X86_RESET_VECTOR_ADDR, reset_vector_stub,
                        sizeof(reset_vector_stub)) < 0)
        return -EFAULT;

    uint64_t gdt[5];
    fill_gdt(gdt);
    if (guest_mem_write(gm, X86_GDT_ADDR, gdt, sizeof(gdt)) < 0)
        return -EFAULT;
    uint64_t idt = 0;
    if (guest_mem_write(gm, X86_IDT_ADDR, &idt, sizeof(idt)) < 0)
        return -EFAULT;

    /* Identity map of the first 4 GiB with 2 MiB pages: the kernel, zero page,
     * command line and initrd all sit below it. */
    uint64_t pml4[512] = {0}, pdpt[512] = {0};
    pml4[0] = X86_PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (X86_PD_ADDR + i * 0x1000) | PTE_PRESENT | PTE_WRITE;
    if (guest_mem_write(gm, X86_PML4_ADDR, pml4, sizeof(pml4)) < 0 ||
        guest_mem_write(gm, X86_PDPT_ADDR, pdpt, sizeof(pdpt)) < 0)
        return -EFAULT;
    uint64_t *pd = guest_mem_ptr(gm, X86_PD_ADDR, 4 * 0x1000);
    if (!pd)
        return -EFAULT;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_HUGE;
    return 0;
}

int x86_set_boot_regs(int vcpu_fd, uint64_t entry, uint64_t zero_page)
{
    struct kvm_sregs sregs;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0) {
        log_error("KVM_GET_SREGS vCPU 0: %s", strerror(errno));
        return -errno;
    }
    uint64_t gdt[5];
    fill_gdt(gdt);
    sregs.gdt.base = X86_GDT_ADDR;
    sregs.gdt.limit = sizeof(gdt) - 1;
    sregs.idt.base = X86_IDT_ADDR;
    sregs.idt.limit = 0;
    sregs.cs = segment_from_gdt(gdt[BOOT_CS / 8], BOOT_CS);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
        segment_from_gdt(gdt[BOOT_DS / 8], BOOT_DS);
    sregs.tr = segment_from_gdt(gdt[BOOT_TSS / 8], BOOT_TSS);
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = X86_PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0) {
        log_error("KVM_SET_SREGS vCPU 0: %s", strerror(errno));
        return -errno;
    }

    struct kvm_regs regs = {
        .rflags = 0x2,          /* bit 1 is reserved-one; interrupts off */
        .rip = entry,
        .rsi = zero_page,
        .rsp = X86_BOOT_STACK_TOP,
        .rbp = X86_BOOT_STACK_TOP,
    };
    if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0) {
        log_error("KVM_SET_REGS vCPU 0: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

int x86_set_msrs(int vcpu_fd, unsigned index)
{
    static const struct {
        uint32_t index;
        uint64_t value;
        const char *name;
    } boot_msrs[] = {
        {MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING, "IA32_MISC_ENABLE"},
        /* Firmware leaves MTRRs on with write-back default; without it Linux
         * treats all RAM as uncached on hosts that honour guest MTRRs. */
        {MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK, "MTRRdefType"},
    };
    const unsigned n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
    struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));
    if (!msrs)
        return -ENOMEM;
    msrs->nmsrs = n;
    for (unsigned i = 0; i < n; i++) {
        msrs->entries[i].index = boot_msrs[i].index;
        msrs->entries[i].data = boot_msrs[i].value;
    }
    int set = ioctl(vcpu_fd, KVM_SET_MSRS, msrs);
    free(msrs);
    if (set < 0) {
        log_error("KVM_SET_MSRS vCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    if ((unsigned)set != n) {
        log_error("KVM_SET_MSRS vCPU %u: KVM refused MSR %s (0x%x)", index,
                  boot_msrs[set].name, boot_msrs[set].index);
        return -EINVAL;
    }
    return 0;
}

int x86_set_fpu(int vcpu_fd, unsigned index)
{
    struct kvm_fpu fpu = {
        .fcw = 0x37f,       /* x87 power-on control word: all exceptions masked */
        .mxcsr = 0x1f80,    /* SSE: all exceptions masked, round to nearest */
    };
    if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0) {
        log_error("KVM_SET_FPU vCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    return 0;
}

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned reg, uint32_t mode)
{
    uint32_t v;
    memcpy(&v, &lapic->regs[reg], sizeof(v));
    v = (v & ~0x700u) | (mode << 8);
    memcpy(&lapic->regs[reg], &v, sizeof(v));
}

int x86_set_lapic(int vcpu_fd, unsigned index)
{
    struct kvm_lapic_state lapic;
    if (ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0) {
        log_error("KVM_GET_LAPIC vCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    /* What a PC's firmware programs: LINT0 takes the legacy PIC's interrupts,
     * LINT1 is the NMI pin. */
    set_lvt_mode(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    set_lvt_mode(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
    if (ioctl(vcpu_fd, KVM_SET_LAPIC, &lapic) < 0) {
        log_error("KVM_SET_LAPIC vCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    return 0;
}

void x86_log_vcpu_state(int vcpu_fd, unsigned index)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_vcpu_events ev;

    if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0) {
        log_error("vCPU %u state: KVM_GET_REGS: %s", index, strerror(errno));
    } else {
        log_error("vCPU %u state: rip 0x%016llx rsp 0x%016llx rflags 0x%llx", index,
                  (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
                  (unsigned long long)regs.rflags);
    }
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0) {
        log_error("vCPU %u state: KVM_GET_SREGS: %s", index, strerror(errno));
    } else {
        log_error("vCPU %u state: cr0 0x%llx cr2 0x%016llx cr3 0x%llx cr4 0x%llx efer 0x%llx "
                  "apic_base 0x%llx",
                  index, (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr2,
                  (unsigned long long)sregs.cr3, (unsigned long long)sregs.cr4,
                  (unsigned long long)sregs.efer, (unsigned long long)sregs.apic_base);
        log_error("vCPU %u state: cs 0x%04x (l %u dpl %u) ss 0x%04x gdt 0x%016llx/0x%x "
                  "idt 0x%016llx/0x%x",
                  index, sregs.cs.selector, sregs.cs.l, sregs.cs.dpl, sregs.ss.selector,
                  (unsigned long long)sregs.gdt.base, sregs.gdt.limit,
                  (unsigned long long)sregs.idt.base, sregs.idt.limit);
    }
    if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0) {
        log_error("vCPU %u state: KVM_GET_VCPU_EVENTS: %s", index, strerror(errno));
    } else {
        /* Vectors mean something only for an event that is there. */
        char exc[48] = "none", irq[32] = "none";
        if (ev.exception.injected || ev.exception.pending)
            snprintf(exc, sizeof(exc), "%s vector %u error 0x%x",
                     ev.exception.pending ? "pending" : "injected", ev.exception.nr,
                     ev.exception.has_error_code ? ev.exception.error_code : 0);
        if (ev.interrupt.injected)
            snprintf(irq, sizeof(irq), "injected vector %u", ev.interrupt.nr);
        log_error("vCPU %u state: exception %s; interrupt %s, shadow 0x%x; nmi %s%s%s",
                  index, exc, irq, ev.interrupt.shadow,
                  ev.nmi.injected ? "injected" : "none", ev.nmi.pending ? ", pending" : "",
                  ev.nmi.masked ? ", masked" : "");
    }
}
