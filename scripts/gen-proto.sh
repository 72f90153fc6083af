#!/usr/bin/env bash
# Regenerate service/proto/example_pb2.py (+ .pyi) from service/proto/example.proto.
# Uses grpc_tools.protoc from the project's virtualenv (the `dev` extra): no system protoc needed.
# Run from anywhere: `bash scripts/gen-proto.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m grpc_tools.protoc \
    --proto_path=service/proto \
    --python_out=service/proto \
    --pyi_out=service/proto \
    service/proto/example.proto
echo "generated service/proto/example_pb2.py and example_pb2.pyi"
