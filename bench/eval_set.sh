#!/bin/sh
# Builds codec 3's evaluation set from files of this Debian machine, none of them in the
# default blob's training corpus (docs/CORPUS.md): prose, source code, a roff manual page, a
# text over 1 MB, a table of numbers and names, an ELF executable, a gzip file, random bytes
# and a short text. Usage: sh bench/eval_set.sh DIR   (then python bench/compare.py DIR)
set -eu
out=${1:?usage: eval_set.sh DIR}
mkdir -p "$out"
lib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
cp /usr/share/common-licenses/GPL-2 "$out/prose-gpl2.txt"
cp /usr/share/common-licenses/MPL-2.0 "$out/prose-mpl2.txt"
cp "$lib/textwrap.py" "$out/code-textwrap.py"
zcat /usr/share/man/man1/unzip.1.gz > "$out/roff-unzip.1"
# a long text of many authors with repeats far apart: Debian's copyright files, in order
find /usr/share/doc -name copyright -type f | LC_ALL=C sort | xargs cat 2>/dev/null | head -c 1100000 > "$out/text-copyrights-1.1M.txt"
# a table of numbers and names: sizes, inodes and paths of the standard library
(cd "$lib" && find . -name '*.py' -printf '%s\t%i\t%p\n' | LC_ALL=C sort -k3) | head -c 60000 > "$out/table-stdlib.tsv"
cp /usr/bin/basename "$out/elf-basename"
cp /usr/share/doc/dpkg/changelog.gz "$out/gzip-dpkg-changelog.gz"
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(1).randbytes(65536))' > "$out/random-64k.bin"
head -c 700 /usr/share/common-licenses/Apache-2.0 | tail -c 600 > "$out/short-apache.txt"
ls -l "$out"
