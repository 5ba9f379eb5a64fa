/* A minimal "kernel" for tests on any /dev/kvm, including ones that cannot run
 * Linux: entered through the 64-bit boot protocol like Linux, it checks the
 * zero page, prints the command line and the start of the initrd on COM1,
 * then does what the first letter of the command line asks. */
        .code64
        .text
        .globl _start
        .org 0x200                      /* 64-bit entry = load address + 0x200 */
_start:
        mov     %rsi, %rbx              /* boot_params */
        lea     msg_hello(%rip), %rsi
        call    puts
        cmpl    $0x53726448, 0x202(%rbx)        /* "HdrS" copied into the zero page */
        jne     fail
        cmpb    $0xff, 0x210(%rbx)              /* type_of_loader */
        jne     fail
        lea     msg_cmdline(%rip), %rsi
        call    puts
        mov     0x228(%rbx), %esi               /* cmd_line_ptr */
        mov     %rsi, %r12
        call    puts
        lea     msg_initrd(%rip), %rsi
        call    puts
        mov     0x218(%rbx), %esi               /* ramdisk_image */
        mov     0x21c(%rbx), %ecx               /* ramdisk_size */
        cmp     $16, %ecx
        jbe     1f
        mov     $16, %ecx
1:      jrcxz   2f
        lodsb
        call    putc
        dec     %ecx
        jmp     1b
2:      lea     msg_e820(%rip), %rsi
        call    puts
        movzbl  0x1e8(%rbx), %eax               /* e820_entries */
        add     $'0', %al
        call    putc
        mov     $'\n', %al
        call    putc

        movzbl  (%r12), %eax                    /* first letter of the command line */
        cmp     $'p', %al
        je      acpi_poweroff
        cmp     $'r', %al
        je      acpi_reset
        cmp     $'k', %al
        je      kbd_reset
        cmp     $'t', %al
        je      triple_fault
        cmp     $'e', %al
        je      echo
        cmp     $'m', %al
        je      unmapped_mmio
        cmp     $'s', %al
        je      spin
        cmp     $'h', %al
        je      unplugged_hotplug
        cmp     $'v', %al
        je      virtio_reset
        cmp     $'c', %al
        je      pit_calibration
        cmp     $'f', %al
        je      flood
fail:
        lea     msg_fail(%rip), %rsi
        call    puts
spin:
        pause
        jmp     spin

acpi_poweroff:
        mov     $0x600, %dx
        mov     $0x34, %al                      /* SLP_TYP 5 << 2 | SLP_EN */
        out     %al, %dx
        jmp     spin
acpi_reset:
        mov     $0x602, %dx
        mov     $0x01, %al
        out     %al, %dx
        jmp     spin
kbd_reset:
        mov     $0x64, %dx
        mov     $0xfe, %al
        out     %al, %dx
        jmp     spin
triple_fault:
        ud2                                     /* empty IDT: #UD -> #DF -> shutdown */

echo:                                           /* echo input until 'q', then power off */
        call    getc
        cmp     $'q', %al
        je      acpi_poweroff
        call    putc
        jmp     echo

flood:                                          /* print without end; 'q' on input powers off */
        lea     msg_flood(%rip), %rsi
        call    puts
        mov     $0x3fd, %dx
        in      %dx, %al
        test    $1, %al
        jz      flood
        mov     $0x3f8, %dx
        in      %dx, %al
        cmp     $'q', %al
        je      acpi_poweroff
        jmp     flood

unmapped_mmio:
        mov     $0xd0000000, %esi               /* a device window with no device */
        mov     (%rsi), %eax
        movl    $0x12345678, (%rsi)
        cmp     $0xffffffff, %eax
        jne     fail
        lea     msg_mmio(%rip), %rsi
        call    puts
        jmp     acpi_poweroff

pit_calibration:                                /* Linux's TSC-vs-PIT loop, bounded: wait for */
        mov     $0x61, %dx                      /* channel 2's output (port 0x61 bit 5) */
        in      %dx, %al
        and     $0xfd, %al                      /* speaker off, */
        or      $0x01, %al                      /* channel 2 gate on */
        out     %al, %dx
        mov     $10000, %ecx
1:      in      %dx, %al
        test    $0x20, %al
        jnz     2f
        loop    1b
        lea     msg_fail(%rip), %rsi            /* never went high */
        call    puts
        jmp     acpi_poweroff
2:      lea     msg_pit(%rip), %rsi
        call    puts
        jmp     acpi_poweroff

virtio_reset:                                   /* Status = 0 on the first virtio-mmio device */
        mov     $0xd0000070, %esi
        movl    $0, (%rsi)
        jmp     acpi_poweroff

unplugged_hotplug:                              /* touch 4 GiB: a virtio-mem region, nothing plugged */
        mov     %cr3, %rax                      /* the loader's page tables map only 4 GiB: */
        and     $~0xfff, %rax
        mov     (%rax), %rax                    /* PML4[0] -> PDPT */
        and     $~0xfff, %rax
        mov     $0x300000, %rdi                 /* a page directory in free RAM */
        mov     $0x100000083, %rcx              /* 2 MiB page at 4 GiB: P|W|PS */
        mov     %rcx, (%rdi)
        movq    $0, 8(%rdi)
        or      $3, %rdi
        mov     %rdi, 32(%rax)                  /* PDPT[4] -> it */
        mov     %cr3, %rax
        mov     %rax, %cr3
        movabs  $0x100000000, %rsi
        mov     (%rsi), %eax
        movl    $0x12345678, (%rsi)
        cmp     $0xffffffff, %eax
        jne     fail
        mov     (%rsi), %eax                    /* the write went nowhere */
        cmp     $0xffffffff, %eax
        jne     fail
        lea     msg_hotplug(%rip), %rsi
        call    puts
        jmp     acpi_poweroff

putc:
        push    %rdx
        mov     $0x3f8, %dx
        out     %al, %dx
        pop     %rdx
        ret
puts:
        lodsb
        test    %al, %al
        jz      1f
        call    putc
        jmp     puts
1:      ret
getc:
        mov     $0x3fd, %dx                     /* LSR: wait for data ready */
1:      in      %dx, %al
        test    $1, %al
        jz      1b
        mov     $0x3f8, %dx
        in      %dx, %al
        ret

msg_hello:      .asciz "TINY-GUEST zero-page "
msg_cmdline:    .asciz "cmdline="
msg_initrd:     .asciz " initrd="
msg_e820:       .asciz " e820="
msg_mmio:       .asciz "MMIO-UNMAPPED-OK\n"
msg_flood:      .asciz "FLOOD 0123456789abcdefghijklmnopqrstuvwxyz 0123456789abcdefghij\n"
msg_hotplug:    .asciz "HOTPLUG-UNPLUGGED-OK\n"
msg_pit:        .asciz "PIT-CALIBRATION-ENDS\n"
msg_fail:       .asciz "TINY-GUEST-FAIL\n"
