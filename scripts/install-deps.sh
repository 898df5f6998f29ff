#!/usr/bin/env bash
# Installs the Debian packages keng builds, tests and runs with, when any is missing.
# As root it runs apt-get; otherwise it prints the exact line for someone who can.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
    librdkafka-dev libavro-dev libuv1-dev libjansson-dev liblmdb-dev libhttp-parser-dev
    libcmocka-dev libssl-dev libcurl4-openssl-dev libcrypt-dev openssl
    poppler-utils fonts-dejavu-core
    python3 python3-avro python3-confluent-kafka python3-yaml python3-venv shellcheck
    kcat curl wrk chromium chromium-driver python3-selenium
    openjdk-17-jre-headless maven
    prometheus prometheus-alertmanager lmdb-utils
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    echo "keng: installing missing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
else
    echo "keng: missing Debian packages. Run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
