"""What crosses a process boundary: Redis streams, gRPC helpers and weight sync.

Each module wraps one transport behind a small interface so that services stay thin and the pure
core never imports redis, grpc or ray.
"""
