"""Reward services: scorers (math verifier, R1 format checker), their gRPC server and client.

`scorer` holds the pure interface and the factory; `server`/`client` are the gRPC edges. Nothing is
imported here so that `import services.reward.scorer` stays free of grpc.
"""
