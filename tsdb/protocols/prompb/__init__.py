"""Prometheus remote write/read protobuf messages (generated; see generate.sh).

``types_pb2`` and ``remote_pb2`` are Prometheus's ``prompb`` messages, ``views_pb2`` the
wire-compatible views that the fast remote write decoder parses requests with.
"""
