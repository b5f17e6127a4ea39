#!/usr/bin/env bash
# GPU figures for the README (B=32, T=200, V=10,000): our step on wgpu beside PyTorch on CUDA
# and our CPU step, interleaved in one run, on a GPU machine that has no Rust toolchain and no
# network. Everything it writes stays under the checkout (.gpu/ and target/). Two halves:
#
#   crates/bench/gpu-figures.sh prepare   # here: builds the bench with wgpu (release) and
#                                         # puts it and the Vulkan/EGL loaders in .gpu/
#   crates/bench/gpu-figures.sh run       # there, with .gpu carried: prints the table and
#                                         # writes it to $OUT/compare.txt
set -euo pipefail
cd "$(dirname "$0")/../.."

prepare() {
    local target=${CARGO_TARGET_DIR:-target/wgpu}
    CARGO_TARGET_DIR=$target cargo build --release -p bench --features wgpu
    mkdir -p .gpu
    # Stripped and compressed (98 MB -> 28 MB): what travels to that machine is limited to 64 MiB.
    strip -o .gpu/bench "$target/release/bench"
    gzip -f .gpu/bench
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
    # The loaders the GPU machine may lack (its NVIDIA driver brings the rest).
    local lists=$PWD/target/gpu-figures-apt
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
    mkdir -p "$lists/partial"
    apt-get "${o[@]}" update -qq
    (cd .gpu && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    du -sh .gpu
    echo "next, on the GPU machine with .gpu carried: crates/bench/gpu-figures.sh run"
}

run() {
    [ -f .gpu/bench.gz ] || { echo ".gpu/bench.gz is missing: run '$0 prepare' first and carry .gpu" >&2; exit 1; }
    gunzip -c .gpu/bench.gz >.gpu/bench
    chmod +x .gpu/bench
    # The loaders go into a private prefix; the dynamic loader finds them through
    # LD_LIBRARY_PATH, and the system's own directories stay untouched.
    local prefix=$PWD/.gpu/root
    mkdir -p "$prefix"
    for f in .gpu/*.deb; do dpkg -x "$f" "$prefix"; done
    export LD_LIBRARY_PATH=$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    local nv=/usr/local/nvidia/share
    if [ -f "$nv/vulkan/icd.d/nvidia_icd.json" ]; then
        export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json
        export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
    fi
    nvidia-smi -L || true
    local out=${OUT:-target/gpu-figures}
    mkdir -p "$out"
    .gpu/bench compare --quick --wgpu --no-stock --python python3 --pytorch-device cuda 2>&1 |
        tee "$out/compare.txt"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
