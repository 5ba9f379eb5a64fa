"""Builds tinyguest.S into a bzImage-shaped file: a setup header that passes
minivmm's bzImage checks, then the flat 64-bit code."""
import os
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SETUP_SECTS = 1


def build(out_path, cc="cc"):
    with tempfile.TemporaryDirectory() as tmp:
        elf = os.path.join(tmp, "tiny.elf")
        flat = os.path.join(tmp, "tiny.bin")
        subprocess.run([cc, "-nostdlib", "-static", "-no-pie", "-Wl,-Ttext=0x100000",
                        "-Wl,--build-id=none", "-o", elf, os.path.join(HERE, "tinyguest.S")],
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
