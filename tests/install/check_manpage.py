#!/usr/bin/env python3
"""minivmm(1) and `--help` agree, and the page renders cleanly.

    check_manpage.py MINIVMM_BINARY MANPAGE

- every long option that `minivmm --help` or `minivmm ctl --help` prints is
  documented in the page's OPTIONS or MINIVMM CTL section;
- every long option the page names is one the binary prints (options of other
  programs in the EXAMPLES, such as curl's, are not minivmm's);
- every ctl command of `minivmm ctl --help` has an entry in MINIVMM CTL;
- `man --warnings=w -l` (every groff warning) renders it at 80 and 60 columns with nothing on
  standard error.
Exits 1 naming each difference.
"""
import os
import re
import subprocess
import sys

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_text(binary, *args):
    run = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        sys.exit(f"{binary} {' '.join(args)} --help: exit status {run.returncode}: {run.stderr}")
    return run.stdout


def roff_to_text(line):
    """The words of one roff line: escapes for hyphens, fonts and joins removed."""
    line = line.replace(r"\-", "-").replace(r"\c", "").replace(r"\e", "\\")
    line = re.sub(r"\\f[BIRP]", "", line)
    line = re.sub(r"\\\(..", "'", line)
    if line.startswith("."):
        line = re.sub(r"^\.[A-Za-z]+\s*", "", line)
    return line.replace('"', " ")


def sections(page):
    """{section name: [text lines]} of a man page source."""
    out, name = {}, ""
    for raw in page.splitlines():
        if raw.startswith('.\\"'):
            continue
        if raw.startswith(".SH "):
            name = raw[4:].strip().strip('"')
            out[name] = []
            continue
        out.setdefault(name, []).append(raw)
    return out


def options_outside_foreign_commands(lines):
    """Options named in the lines, except on commands of other programs (curl ...)."""
    found, foreign = set(), False
    for raw in lines:
        text = roff_to_text(raw).strip()
        starts_command = re.match(r"^[a-z][\w.-]*\s", text + " ")
        if starts_command and not foreign:
            foreign = not text.startswith("minivmm")
        if not foreign:
            found |= set(OPTION.findall(text))
        if not text.endswith("\\"):
            foreign = False
    return found


def main():
    binary, manpage = sys.argv[1], sys.argv[2]
    main_help = help_text(binary)
    ctl_help = help_text(binary, "ctl")
    helped = set(OPTION.findall(main_help)) | set(OPTION.findall(ctl_help))

    page = open(manpage, encoding="utf-8").read()
    secs = sections(page)
    problems = []
    for required in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "MINIVMM CTL",
                     "THE API SOCKET", "EXIT STATUS", "EXAMPLES"):
        if required not in secs:
            problems.append(f"the page has no {required} section")

    documented = set()
    for name in ("OPTIONS", "MINIVMM CTL"):
        documented |= set(OPTION.findall("\n".join(roff_to_text(l) for l in secs.get(name, []))))
    for opt in sorted(helped - documented):
        problems.append(f"{opt}: printed by --help but not documented in OPTIONS or MINIVMM CTL")

    named = set()
    for name, lines in secs.items():
        named |= options_outside_foreign_commands(lines)
    for opt in sorted(named - helped):
        problems.append(f"{opt}: in the man page but not printed by minivmm --help or ctl --help")

    commands = set()
    for line in ctl_help.splitlines():
        m = re.match(r"^  (\w+)(?:\s+\|\s+(\w+))?\s", line)
        if m:
            commands |= {c for c in m.groups() if c}
    ctl_tags = "\n".join(roff_to_text(l) for l in secs.get("MINIVMM CTL", []))
    for cmd in sorted(commands):
        if not re.search(rf"(^|\s){cmd}(\s|$)", ctl_tags, re.M):
            problems.append(f"ctl command '{cmd}' has no entry in MINIVMM CTL")
    if not commands:
        problems.append("no commands found in minivmm ctl --help")

    for width in ("80", "60"):
        env = dict(os.environ, MANWIDTH=width, LC_ALL="C.UTF-8")
        try:
            run = subprocess.run(["man", "--warnings=w", "-E", "UTF-8", "-l", manpage],
                                 capture_output=True, text=True, env=env, timeout=60)
        except FileNotFoundError:
            problems.append("man is not installed (Debian's man-db, in tests/deps.sh)")
            break
        if run.returncode != 0 or run.stderr.strip():
            problems.append(f"man -l at {width} columns: exit {run.returncode}: {run.stderr.strip()}")
        elif "minivmm ctl" not in run.stdout:
            problems.append(f"man -l at {width} columns rendered no 'minivmm ctl'")

    for p in problems:
        print(f"check_manpage: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_manpage: {len(helped)} options agree; {len(commands)} ctl commands; renders cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
