#!/usr/bin/env bash
# Installs the Debian 12 packages epserve builds and tests with. Safe to run again.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libfmt-dev libspdlog-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev
  libucx-dev ucx-utils libzmq3-dev libsodium-dev libcpp-httplib-dev libjpeg62-turbo-dev libpng-dev
  libwebp-dev libgif-dev libstb-dev
  libopenblas-dev libdnnl-dev openmpi-bin libopenmpi-dev
  clang clang-format libclang-rt-14-dev iproute2 python3 python3-venv python3-pip
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
