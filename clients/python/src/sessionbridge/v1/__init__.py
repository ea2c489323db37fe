"""The gRPC stubs of sessionbridge.v1, generated from the service's .proto
when the package is built: `sessionbridge_pb2` (messages) and
`sessionbridge_pb2_grpc` (SessionBridgeServiceStub)."""
