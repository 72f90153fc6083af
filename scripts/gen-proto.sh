#!/usr/bin/env bash
# Regenerate service/proto/example_pb2.py (+ .pyi) from service/proto/example.proto with
# `python -m grpc_tools.protoc` (no system protoc needed). Run from anywhere:
#
#   bash scripts/gen-proto.sh            # the committed gencode: grpcio-tools 1.71.0 (gencode 5.29)
#   bash scripts/gen-proto.sh --venv     # the project venv's grpcio-tools (.venv/bin/python)
#   PYTHON=/path/to/python bash scripts/gen-proto.sh   # any Python that has grpcio-tools
#
# Why a pinned grpcio-tools: protobuf's generated Python refuses to import under a runtime OLDER
# than the protoc that wrote it (runtime_version.ValidateProtobufRuntimeVersion). The dev venv's
# grpcio-tools 1.85 writes gencode 7.35, which would force `protobuf>=7.35`; grpcio-tools 1.71.0
# writes gencode 5.29, which imports under every runtime pyproject allows (protobuf>=5.29, checked
# with 5.29.6 and 7.36.2). By default this script installs that version into a scratch venv
# outside the repo (${CCRL_PROTOC_VENV:-/tmp/ccrl-grpc-tools-1.71.0}), from the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPC_TOOLS_VERSION="1.71.0"
if [[ "${1:-}" == "--venv" ]]; then
    PY=".venv/bin/python"
elif [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
else
    TOOLS_VENV="${CCRL_PROTOC_VENV:-/tmp/ccrl-grpc-tools-$GRPC_TOOLS_VERSION}"
    if [[ ! -x "$TOOLS_VENV/bin/python" ]] \
        || ! "$TOOLS_VENV/bin/python" -c "import grpc_tools" 2>/dev/null; then
        echo "installing grpcio-tools==$GRPC_TOOLS_VERSION into $TOOLS_VENV" >&2
        python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install -q "grpcio-tools==$GRPC_TOOLS_VERSION" "protobuf>=5.29,<6"
    fi
    PY="$TOOLS_VENV/bin/python"
fi

"$PY" -m grpc_tools.protoc \
    --proto_path=service/proto \
    --python_out=service/proto \
    --pyi_out=service/proto \
    service/proto/example.proto

# The generated module must import with the project's protobuf runtime.
if [[ -x .venv/bin/python ]]; then
    .venv/bin/python -c "from service.proto import example_pb2 as m; \
import google.protobuf as g; print('example_pb2 imports with protobuf', g.__version__, \
'->', m.SequenceExample.DESCRIPTOR.full_name)"
fi
grep -m1 "Protobuf Python Version" service/proto/example_pb2.py
