#!/bin/sh
# Build images/tools.tar offline: a docker-archive image around Debian's
# busybox-static (apt-get install busybox-static) with our gc-content tool.
# The tar is deterministic: the same busybox gives the same sha256.
set -e
cd "$(dirname "$0")"
mkdir -p images
python3 ../../tests/runtime/imagebuild.py --format docker \
    --add usr/bin/gc-content=tools/gc-content --env PATH=/usr/bin:/bin images/tools.tar
