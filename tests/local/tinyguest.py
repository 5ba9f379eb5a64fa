"""Builds tinyguest.S into a bzImage-shaped file: a setup header that passes
minivmm's bzImage checks, then the flat 64-bit code."""
import os
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SETUP_SECTS = 1


LINKER_SCRIPT = """
SECTIONS {
    . = 0x100000;
    .text : { *(.entry) *(.text .text.*) }
    .rodata : { *(.rodata .rodata.*) }
    .data : { *(.data .data.*) *(.bss .bss.*) *(COMMON) }
    /DISCARD/ : { *(.eh_frame) *(.note*) *(.comment) }
}
"""


def build(out_path, cc="cc", source="tinyguest.S"):
    """tinyguest.S, or a freestanding C guest (hostile_guest.c) whose entry
    sits in section .entry at offset 0x200."""
    with tempfile.TemporaryDirectory() as tmp:
        elf = os.path.join(tmp, "tiny.elf")
        flat = os.path.join(tmp, "tiny.bin")
        if source.endswith(".c"):
            script = os.path.join(tmp, "flat.ld")
            with open(script, "w") as f:
                f.write(LINKER_SCRIPT)
            subprocess.run([cc, "-O2", "-ffreestanding", "-fno-pic", "-fno-stack-protector",
                            "-mno-red-zone", "-mgeneral-regs-only", "-fno-asynchronous-unwind-tables",
                            "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none",
                            "-Wl,--no-warn-rwx-segments", "-Wl,-T," + script, "-o", elf, os.path.join(HERE, source)],
                           check=True)
            subprocess.run(["objcopy", "-O", "binary", elf, flat], check=True)
        else:
            subprocess.run([cc, "-nostdlib", "-static", "-no-pie", "-Wl,-Ttext=0x100000",
                            "-Wl,--build-id=none", "-o", elf, os.path.join(HERE, source)],
                           check=True)
            subprocess.run(["objcopy", "-O", "binary", "-j", ".text", elf, flat], check=True)
        with open(flat, "rb") as f:
            code = f.read()
    setup = bytearray((SETUP_SECTS + 1) * 512)
    setup[0x1f1] = SETUP_SECTS
    struct.pack_into("<H", setup, 0x1fe, 0xAA55)
    setup[0x201] = 0x6a                              # header ends at 0x26c
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)     # boot protocol 2.15
    setup[0x211] = 0x01                              # LOADED_HIGH
    struct.pack_into("<I", setup, 0x22C, 0x37FFFFFF)  # initrd_addr_max
    setup[0x234] = 1                                 # relocatable
    setup[0x236] = 0x01                              # XLF_KERNEL_64
    struct.pack_into("<I", setup, 0x238, 2047)       # cmdline_size
    struct.pack_into("<I", setup, 0x260, 0x100000)   # init_size
    image = bytes(setup) + code
    if len(image) < 4096:
        image += bytes(4096 - len(image))
    with open(out_path, "wb") as f:
        f.write(image)
    return out_path
