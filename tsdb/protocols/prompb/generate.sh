#!/usr/bin/env bash
# Regenerate the *_pb2.py modules (and .pyi stubs) from the .proto files beside this script.
#
# Use the protoc of grpcio-tools 1.62.x (libprotoc 25.x), best in a throw-away virtualenv so
# the project's own protobuf runtime is left alone:
#
#   python -m venv /tmp/protoc-venv && /tmp/protoc-venv/bin/pip install 'grpcio-tools==1.62.*'
#   PYTHON=/tmp/protoc-venv/bin/python tsdb/protocols/prompb/generate.sh
#
# Why that version: gencode from protoc 25 ("Protobuf Python Version: 4.25.x") carries no
# runtime version check and only uses the descriptor-pool/builder API, so it loads on every
# protobuf runtime that pyproject.toml allows (>=4.25,<8). Gencode from protoc 26 and later
# calls google.protobuf.runtime_version, which 4.25 lacks, and refuses older runtimes.
#
# The .proto files are compiled with the repository root as the import path, so each file is
# registered under its repository path (tsdb/protocols/prompb/types.proto: no clash with
# another library's "types.proto" in protobuf's default pool) and remote_pb2 imports
# types_pb2 as tsdb.protocols.prompb.types_pb2.
set -euo pipefail

PYTHON="${PYTHON:-python}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

version="$("$PYTHON" -m grpc_tools.protoc --version)"
case "$version" in
  "libprotoc 25."*) ;;
  *) echo "generate.sh: need grpcio-tools 1.62.x (libprotoc 25.x), found: $version" >&2; exit 1 ;;
esac

cd "$root"
rel="tsdb/protocols/prompb"
"$PYTHON" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
  "$rel/types.proto" "$rel/remote.proto" "$rel/views.proto"

# Generated code follows protoc's style, not ours: keep ruff's linter and formatter off it.
for f in "$rel"/*_pb2.py "$rel"/*_pb2.pyi; do
  { printf '# ruff: noqa\n# fmt: off\n'; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
done
echo "generated: $(cd "$rel" && ls ./*_pb2.py ./*_pb2.pyi | tr '\n' ' ')"
