"""gRPC servicers: thin mapping between protos and the domain."""
