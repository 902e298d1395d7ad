#!/usr/bin/env bash
# Build the launcher as a directory bundle that runs where no Python is installed
# (docs/guides/images-without-python.md).
#
#   packaging/bundle.sh [OUT]        # default: dist/ in the checkout
#
# Result: OUT/launcher/launcher (the command) and OUT/launcher/_internal/ (everything it
# loads), plus OUT/launcher.tar.gz. The build runs in a virtual environment of its own,
# OUT/.build-venv (kept, so a rebuild reuses it), made with $PYTHON (default python3,
# which must have its shared library, as python.org builds, pyenv with --enable-shared and
# the official Docker images do). Needs objdump (binutils) and strip.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python3}
venv=$out/.build-venv
bundle=$out/launcher

# Every extra of pyproject.toml goes in, but these: a new backend's extra (say `gcp`) is
# picked up with no change here; an extra for development or for in-process use is not.
# pydantic serves the Python API (launcher.pydantic), which a bundle has no use for.
excluded_extras="test pydantic docs dev bench"  # in-process use, tests, docs and benchmark charts: not the command
pyinstaller_version=6.22.3

for tool in objdump strip tar; do
    command -v "$tool" >/dev/null || { echo "bundle.sh: $tool is missing (Debian: apt-get install binutils)" >&2; exit 1; }
done

if [ ! -x "$venv/bin/python" ]; then
    echo "+ $python -m venv $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
"${pip[@]}" install "tomli>=2; python_version < '3.11'"
# PyInstaller's own bootloader (the `launcher` executable) links zlib dynamically, and an
# image without Python may have no zlib: it is compiled here from PyInstaller's source
# with zlib built in, so that the bundle needs the C library alone (a C compiler is needed:
# Debian's gcc and libc6-dev).
needs_bootloader_build() {  # true unless the right PyInstaller, with a bootloader that needs no libz, is there
    local package
    package=$("$venv/bin/python" -c "import os, PyInstaller; print(os.path.dirname(PyInstaller.__file__))" 2>/dev/null) || return 0
    [ "$("$venv/bin/pyinstaller" --version)" = "$pyinstaller_version" ] || return 0
    local needed
    needed=$(find "$package/bootloader" -path '*Linux*' -name run -exec objdump -p {} + 2>/dev/null)
    grep -q 'NEEDED *libz' <<<"$needed"
}
if needs_bootloader_build; then
    command -v cc >/dev/null || { echo "bundle.sh: a C compiler is missing (Debian: apt-get install gcc libc6-dev)" >&2; exit 1; }
    echo "+ pip install pyinstaller==$pyinstaller_version (its bootloader compiled with zlib built in)"
    PYI_STATIC_ZLIB=1 PYINSTALLER_COMPILE_BOOTLOADER=1 \
        "${pip[@]}" install --force-reinstall --no-deps --no-binary pyinstaller "pyinstaller==$pyinstaller_version"
    "${pip[@]}" install "pyinstaller==$pyinstaller_version"  # its dependencies, as wheels
fi

extras=$("$venv/bin/python" - "$root/pyproject.toml" "$excluded_extras" <<'PY'
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as fh:
    extras = tomllib.load(fh)["project"].get("optional-dependencies", {})
print(",".join(name for name in extras if name not in sys.argv[2].split()))
PY
)
# Installed from a fresh copy of what the wheel is made of (packaging/Dockerfile copies the
# same): a build in the checkout would leave build/ behind, and setuptools packs whatever
# a previous build left in build/lib, modules since moved or deleted included.
src=$out/.build/src
rm -rf "$src" && mkdir -p "$src"
cp -R "$root/pyproject.toml" "$root/README.md" "$root/launcher" "$src/"
echo "+ pip install '$root[$extras]'"
"${pip[@]}" install "$src[$extras]"

echo "+ pyinstaller packaging/launcher.spec (into $bundle)"
# The spec: --onedir (a onefile bundle would unpack itself into /tmp at every start, and
# fail where /tmp is noexec), every launcher module, the service models kept, stripped.
"$venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$out" --workpath "$out/.build" \
    "$root/packaging/launcher.spec"
internal=$bundle/_internal

# The highest GLIBC_x.y symbol version any ELF file of the bundle asks for: the oldest C
# library it runs on. Recorded in the bundle for `launcher --version`.
elves=()
while IFS= read -r -d '' file; do
    [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ] && elves+=("$file")
done < <(find "$bundle" -type f -print0)
glibc=$(objdump -T "${elves[@]}" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
# What the bundle loads from the system: only the C library's own files may be listed.
system_libs=$(objdump -p "${elves[@]}" 2>/dev/null | awk '$1 == "NEEDED" {print $2}' | sort -u |
    while read -r lib; do [ -e "$internal/$lib" ] || [ -n "$(find "$bundle" -name "$lib" -print -quit)" ] || echo "$lib"; done |
    tr '\n' ' ')
version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('secret-launcher'))")
python_version=$("$venv/bin/python" -c "import platform; print(platform.python_version())")
printf '{"version": "%s", "glibc": "%s", "python": "%s", "system_libraries": "%s"}\n' \
    "$version" "$glibc" "$python_version" "${system_libs% }" > "$internal/launcher-bundle.json"

tar -C "$out" -czf "$out/launcher.tar.gz" launcher
echo "bundle:    $bundle/launcher ($version, Python $python_version, extras: $extras)"
echo "size:      $(du -sh "$bundle" | cut -f1) on disk ($(du -sb "$bundle" | cut -f1) bytes in files), $(du -h "$out/launcher.tar.gz" | cut -f1) as $out/launcher.tar.gz"
echo "glibc:     >= $glibc (highest GLIBC_ symbol version; musl is not supported)"
echo "system:    ${system_libs% }"
