"""Generated gRPC stubs of the interlock.v1 API (make proto). Do not edit."""
